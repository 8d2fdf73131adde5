"""Arena plugins: tasks and presets, found through the entry-point group ``hybridzoo.tasks``.

An arena plugin is a module (or object) named by an entry point of the group ``hybridzoo.tasks``
that implements one or both hooks below, marked with :data:`hybridzoo.hookimpl`::

    import hybridzoo

    @hybridzoo.hookimpl
    def hybridzoo_arena_tasks():
        return [Parity]            # task classes (see hybridzoo.arena.tasks)

    @hybridzoo.hookimpl
    def hybridzoo_arena_presets():
        return [Preset(...)]       # named arena runs (see hybridzoo.arena.presets)

The builtin tasks and presets are found exactly like third-party ones. Plugins load lazily, in a
fixed order (distribution name, then entry-point name), and in isolation: a plugin whose import
raises (``SystemExit`` included), whose hook returns garbage, or which claims a task or preset
name that is taken is recorded with the reason (``hybridzoo arena --list`` shows it) and the
others load. The environment variables of the layer registry apply here too:
``HYBRIDZOO_DISABLE_PLUGIN_AUTOLOAD=1``, ``HYBRIDZOO_DISABLE_PLUGINS=a,b`` and
``HYBRIDZOO_STRICT_PLUGINS=1`` (a failure raises).
"""

from __future__ import annotations

import contextlib
import importlib.metadata as md
import os
import threading
from collections.abc import Iterator, Sequence
from typing import Any

import attrs
import pluggy

from hybridzoo.errors import PluginConflictError, PluginError
from hybridzoo.hookspecs import PROJECT_NAME, hookspec
from hybridzoo.registry.loader import find_entry_points, is_disabled

__all__ = [
    "ENTRY_POINT_GROUP",
    "ArenaPluginRecord",
    "ArenaRegistry",
    "get_arena_registry",
    "use_arena_registry",
]

ENTRY_POINT_GROUP = "hybridzoo.tasks"
RUNTIME = "<runtime>"
_HOOKS = ("hybridzoo_arena_tasks", "hybridzoo_arena_presets")


class ArenaHookSpecs:
    """The hooks of an arena plugin (both optional)."""

    @hookspec
    def hybridzoo_arena_tasks(self) -> Sequence[type]:  # type: ignore[empty-body]
        """Return task classes (attrs records with ``name``, ``vocab_size``, ``seq_len``,
        ``chance_level`` and ``generate``; see :mod:`hybridzoo.arena.tasks`)."""

    @hookspec
    def hybridzoo_arena_presets(self) -> Sequence[Any]:  # type: ignore[empty-body]
        """Return :class:`~hybridzoo.arena.presets.Preset` objects (named arena runs)."""


@attrs.define
class ArenaPluginRecord:
    """One arena plugin as the registry saw it."""

    name: str
    distribution: str | None
    version: str | None
    target: str | None
    status: str = "loaded"  # "loaded", "failed" or "disabled"
    error: str | None = None
    tasks: list[str] = attrs.Factory(list)
    presets: list[str] = attrs.Factory(list)


def _env(name: str) -> str:
    return os.environ.get(name, "").strip()


class ArenaRegistry:
    """Tasks and presets from entry points and run-time registration.

    The arguments mean what they mean for :class:`hybridzoo.Registry` (``autoload``, ``strict``,
    ``disabled``: by default from the same environment variables); ``entry_points`` replaces
    the installed ones (tests).
    """

    def __init__(
        self,
        *,
        autoload: bool | None = None,
        strict: bool | None = None,
        disabled: Sequence[str] | None = None,
        entry_points: Sequence[md.EntryPoint] | None = None,
    ) -> None:
        truthy = {"1", "true", "yes", "on"}
        off = _env("HYBRIDZOO_DISABLE_PLUGIN_AUTOLOAD").lower() in truthy
        self.autoload = not off if autoload is None else autoload
        self.strict = (
            _env("HYBRIDZOO_STRICT_PLUGINS").lower() in truthy if strict is None else strict
        )
        env_disabled = [p.strip() for p in _env("HYBRIDZOO_DISABLE_PLUGINS").split(",")]
        self.disabled = frozenset(disabled if disabled is not None else filter(None, env_disabled))
        self._given = list(entry_points) if entry_points is not None else None
        self._lock = threading.RLock()
        self._loaded = False
        self._tasks: dict[str, tuple[type, str]] = {}
        self._presets: dict[str, tuple[Any, str]] = {}
        self._records: list[ArenaPluginRecord] = []

    # -- loading -----------------------------------------------------------------------------

    def load(self) -> None:
        """Load the entry-point plugins now (idempotent; normally done on first use)."""
        with self._lock:
            if self._loaded:
                return
            self._loaded = True
            if not self.autoload:
                return
            for ep in find_entry_points(ENTRY_POINT_GROUP, self._given):
                self._load_entry_point(ep)

    def _load_entry_point(self, ep: md.EntryPoint) -> None:
        dist = getattr(ep, "dist", None)
        record = ArenaPluginRecord(
            ep.name, getattr(dist, "name", None), getattr(dist, "version", None), ep.value
        )
        self._records.append(record)
        if is_disabled(ep, self.disabled):
            record.status, record.error = "disabled", "disabled by HYBRIDZOO_DISABLE_PLUGINS"
            return
        where = f"arena plugin {ep.name!r} ({ep.value}) from {record.distribution or '?'!r}"
        try:
            plugin = ep.load()
            tasks, presets = self._call_hooks(plugin, where)
        except KeyboardInterrupt:
            record.status, record.error = "failed", f"{where}: interrupted while loading"
            raise
        except BaseException as exc:  # SystemExit too: one plugin never ends the program
            reason = str(exc) if isinstance(exc, PluginError) else f"{type(exc).__name__}: {exc}"
            self._fail(record, f"{where} failed: {reason}", exc)
            return
        for task in tasks:
            self._add(self._tasks, task.name, task, record, "task", record.tasks)
        for preset in presets:
            self._add(self._presets, preset.name, preset, record, "preset", record.presets)

    def _call_hooks(self, plugin: object, where: str) -> tuple[list[type], list[Any]]:
        from hybridzoo.arena.presets import Preset
        from hybridzoo.arena.tasks import check_task_class

        manager = pluggy.PluginManager(PROJECT_NAME)
        manager.add_hookspecs(ArenaHookSpecs)
        manager.register(plugin)
        impls = {h: getattr(manager.hook, h).get_hookimpls() for h in _HOOKS}
        if not any(impls.values()):
            raise PluginError(f"{where} implements neither {' nor '.join(_HOOKS)}")
        tasks = [t for impl in impls[_HOOKS[0]] for t in _as_list(impl.function(), where)]
        presets = [p for impl in impls[_HOOKS[1]] for p in _as_list(impl.function(), where)]
        for task in tasks:
            check_task_class(task)
        for preset in presets:
            if not isinstance(preset, Preset):
                raise PluginError(f"{where}: a preset must be a Preset, got {preset!r:.80}")
        return tasks, presets

    def _fail(self, record: ArenaPluginRecord, message: str, exc: BaseException | None) -> None:
        if record.status == "loaded" and not (record.tasks or record.presets):
            record.status = "failed"
        message = message.rstrip(".") + f". To skip it: HYBRIDZOO_DISABLE_PLUGINS={record.name}."
        record.error = message if record.error is None else f"{record.error}; {message}"
        if self.strict:
            raise PluginError(
                f"{message} (strict plugin mode)",
                plugin=record.name,
                distribution=record.distribution,
            ) from exc

    def _add(
        self,
        table: dict[str, tuple[Any, str]],
        name: str,
        value: Any,
        record: ArenaPluginRecord,
        kind: str,
        names: list[str],
    ) -> None:
        owner = record.distribution or record.name
        if name in table:
            message = (
                f"the {kind} name {name!r} from {owner!r} is already used by {table[name][1]!r}"
            )
            self._fail(record, message, None)
            return
        table[name] = (value, owner)
        names.append(name)

    # -- run-time registration --------------------------------------------------------------

    def register_task(self, task_class: type, *, replace: bool = False) -> type:
        """Add a task class at run time (checked like a plugin's); a taken name is an error
        unless ``replace``."""
        from hybridzoo.arena.tasks import check_task_class

        check_task_class(task_class)
        return self._register(self._tasks, task_class.name, task_class, "task", replace)

    def register_preset(self, preset: Any, *, replace: bool = False) -> Any:
        """Add a :class:`~hybridzoo.arena.presets.Preset` at run time."""
        from hybridzoo.arena.presets import Preset

        if not isinstance(preset, Preset):
            raise TypeError(f"a preset must be a Preset, got {preset!r:.80}")
        return self._register(self._presets, preset.name, preset, "preset", replace)

    def _register(
        self, table: dict[str, tuple[Any, str]], name: str, value: Any, kind: str, replace: bool
    ) -> Any:
        with self._lock:
            self.load()
            if name in table and not replace:
                raise PluginConflictError(
                    f"{kind} {name!r} is already registered (by {table[name][1]!r}); choose "
                    "another name or pass replace=True"
                )
            table[name] = (value, RUNTIME)
        return value

    @contextlib.contextmanager
    def registered(self, *items: Any, replace: bool = False) -> Iterator[None]:
        """Register task classes and presets for the duration of a ``with`` block (tests)."""
        from hybridzoo.arena.presets import Preset

        with self._lock:
            self.load()
            saved = dict(self._tasks), dict(self._presets)
        try:
            for item in items:
                if isinstance(item, Preset):
                    self.register_preset(item, replace=replace)
                else:
                    self.register_task(item, replace=replace)
            yield
        finally:
            with self._lock:
                self._tasks, self._presets = saved

    # -- queries --------------------------------------------------------------------------------

    def tasks(self) -> dict[str, type]:
        """``{task name: task class}``, sorted by name."""
        self.load()
        return {name: self._tasks[name][0] for name in sorted(self._tasks)}

    def presets(self) -> dict[str, Any]:
        """``{preset name: Preset}``, sorted by name."""
        self.load()
        return {name: self._presets[name][0] for name in sorted(self._presets)}

    def source(self, kind: str, name: str) -> str:
        """The distribution (or ``"<runtime>"``) that supplied a task or preset."""
        self.load()
        return (self._tasks if kind == "task" else self._presets)[name][1]

    def plugins(self) -> list[ArenaPluginRecord]:
        """Every entry-point plugin seen, with its status."""
        self.load()
        return list(self._records)

    def failures(self) -> list[ArenaPluginRecord]:
        """The plugins that failed to load, or loaded only in part."""
        return [r for r in self.plugins() if r.error is not None and r.status != "disabled"]


def _as_list(result: Any, where: str) -> list[Any]:
    if not isinstance(result, list | tuple):
        raise PluginError(f"{where}: a hook must return a list, got {type(result).__name__}")
    return list(result)


class _Default:
    """The process-wide default registry (created on first use)."""

    registry: ArenaRegistry | None = None
    lock = threading.Lock()


def get_arena_registry() -> ArenaRegistry:
    """The default arena registry (created on first use)."""
    with _Default.lock:
        if _Default.registry is None:
            _Default.registry = ArenaRegistry()
        return _Default.registry


@contextlib.contextmanager
def use_arena_registry(registry: ArenaRegistry) -> Iterator[ArenaRegistry]:
    """Make ``registry`` the default inside a ``with`` block (tests)."""
    previous, _Default.registry = _Default.registry, registry
    try:
        yield registry
    finally:
        _Default.registry = previous

"""The layer registry: entry-point discovery (through pluggy), run-time registration, conflicts.

Entry points of the group ``hybridzoo.layers`` are loaded lazily, on first use, in a fixed order
(distribution name, then entry-point name). The builtin layers are found exactly like third-party
ones. A plugin that fails (its import raises, its hook returns garbage, it claims a name that is
taken) is recorded with its distribution and the reason, and the others load; in strict mode the
failure raises instead.

Environment variables (read when a :class:`Registry` is created):

``HYBRIDZOO_DISABLE_PLUGIN_AUTOLOAD=1``
    load no entry points (only layers registered at run time exist).
``HYBRIDZOO_DISABLE_PLUGINS=a,b``
    skip these plugins (entry-point names or distribution names).
``HYBRIDZOO_STRICT_PLUGINS=1``
    raise on the first plugin failure instead of recording it.
"""

from __future__ import annotations

import contextlib
import fnmatch
import importlib.metadata as md
import os
import threading
import traceback
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Literal

import attrs
import pluggy

from hybridzoo.errors import (
    PluginConflictError,
    PluginError,
    UnknownLayerError,
)
from hybridzoo.hookspecs import PROJECT_NAME, HookSpecs
from hybridzoo.spec import LayerSpec, validate_spec

__all__ = [
    "ENTRY_POINT_GROUP",
    "PluginRecord",
    "Registry",
    "get_registry",
    "use_registry",
]

ENTRY_POINT_GROUP = "hybridzoo.layers"
RUNTIME = "<runtime>"

_TRUE = {"1", "true", "yes", "on"}


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in _TRUE


def _env_list(name: str) -> frozenset[str]:
    return frozenset(p.strip() for p in os.environ.get(name, "").split(",") if p.strip())


@attrs.define
class PluginRecord:
    """One plugin as the registry saw it (shown by ``hybridzoo plugins``)."""

    name: str
    distribution: str | None
    version: str | None
    target: str | None
    status: Literal["loaded", "failed", "disabled"] = "loaded"
    error: str | None = None
    layers: list[str] = attrs.Factory(list)
    patterns: list[str] = attrs.Factory(list)

    def to_dict(self) -> dict[str, Any]:
        return attrs.asdict(self)


@attrs.define
class _Entry:
    spec: LayerSpec
    plugin: str
    distribution: str | None
    version: str | None


class Registry:
    """A set of layer specs: discovered from entry points and registered at run time.

    Args:
        autoload: load entry points on first use (default: unless
            ``HYBRIDZOO_DISABLE_PLUGIN_AUTOLOAD`` is set).
        strict: raise on a plugin failure instead of recording it (default:
            ``HYBRIDZOO_STRICT_PLUGINS``).
        disabled: plugins (entry-point or distribution names) to skip (default:
            ``HYBRIDZOO_DISABLE_PLUGINS``).
        group: the entry-point group.
        entry_points: the entry points to consider (default: the installed ones); tests pass
            their own.
    """

    def __init__(
        self,
        *,
        autoload: bool | None = None,
        strict: bool | None = None,
        disabled: Sequence[str] | None = None,
        group: str = ENTRY_POINT_GROUP,
        entry_points: Sequence[md.EntryPoint] | None = None,
    ) -> None:
        self.autoload = (
            not _env_flag("HYBRIDZOO_DISABLE_PLUGIN_AUTOLOAD") if autoload is None else autoload
        )
        self.strict = _env_flag("HYBRIDZOO_STRICT_PLUGINS") if strict is None else strict
        self.disabled = (
            frozenset(disabled) if disabled is not None else _env_list("HYBRIDZOO_DISABLE_PLUGINS")
        )
        self.group = group
        self._given_entry_points = list(entry_points) if entry_points is not None else None
        self._lock = threading.RLock()
        self._loaded = False
        self._entries: dict[str, _Entry] = {}
        self._symbols: dict[str, str] = {}
        self._prefixes: dict[str, str] = {}
        # keys ("name:x", "symbol:X", "prefix:p") that two plugins claim -> the explanation
        self._contested: dict[str, str] = {}
        self._patterns: dict[str, tuple[Callable[[int], list[str]], str]] = {}
        self._plugins: list[PluginRecord] = []
        self.plugin_manager = pluggy.PluginManager(PROJECT_NAME)
        self.plugin_manager.add_hookspecs(HookSpecs)

    # -- loading ---------------------------------------------------------------------------

    def load(self) -> None:
        """Load the entry-point plugins now (idempotent; normally done on first use)."""
        with self._lock:
            if self._loaded:
                return
            self._loaded = True
            if self.autoload:
                for ep in self._sorted_entry_points():
                    self._load_entry_point(ep)

    def _sorted_entry_points(self) -> list[md.EntryPoint]:
        eps = (
            self._given_entry_points
            if self._given_entry_points is not None
            else list(md.entry_points(group=self.group))
        )
        unique: dict[tuple[str, str], md.EntryPoint] = {}
        for ep in eps:
            unique.setdefault((ep.name, ep.value), ep)

        def key(ep: md.EntryPoint) -> tuple[str, str]:
            dist = getattr(ep, "dist", None)
            return ((dist.name if dist else "") or "", ep.name)

        return sorted(unique.values(), key=key)

    def _load_entry_point(self, ep: md.EntryPoint) -> None:
        dist = getattr(ep, "dist", None)
        dist_name = dist.name if dist is not None else None
        version = dist.version if dist is not None else None
        record = PluginRecord(ep.name, dist_name, version, ep.value)
        self._plugins.append(record)
        if ep.name in self.disabled or (dist_name is not None and dist_name in self.disabled):
            record.status = "disabled"
            record.error = "disabled by HYBRIDZOO_DISABLE_PLUGINS"
            return
        where = f"plugin {ep.name!r} ({ep.value}) from distribution {dist_name or '?'!r}"
        try:
            plugin = ep.load()
        except Exception as exc:
            self._fail(
                record,
                f"{where} failed to import: {type(exc).__name__}: {exc}. Fix the plugin, or "
                f"skip it with HYBRIDZOO_DISABLE_PLUGINS={ep.name}.",
                exc,
            )
            return
        self._register_plugin_object(plugin, record, where)

    def _register_plugin_object(self, plugin: object, record: PluginRecord, where: str) -> None:
        pm = self.plugin_manager
        try:
            # the pluggy name must be unique: two distributions may use one entry-point name
            pm.register(plugin, name=f"{record.distribution or '?'}:{record.name}")
        except Exception as exc:
            self._fail(record, f"{where} could not be registered with pluggy: {exc}", exc)
            return
        impls = {
            hook: [i for i in getattr(pm.hook, hook).get_hookimpls() if i.plugin is plugin]
            for hook in ("hybridzoo_layer_specs", "hybridzoo_named_patterns")
        }
        if not any(impls.values()):
            pm.unregister(plugin)
            self._fail(
                record,
                f"{where} implements no hybridzoo hook: mark a function "
                "`hybridzoo_layer_specs()` with @hybridzoo.hookimpl.",
            )
            return
        staged: list[LayerSpec] = []
        try:
            for impl in impls["hybridzoo_layer_specs"]:
                result = impl.function()
                if isinstance(result, LayerSpec):
                    result = [result]
                if not isinstance(result, list | tuple):
                    raise PluginError(
                        f"{where}: hybridzoo_layer_specs() must return a list of LayerSpec, "
                        f"got {type(result).__name__}: {result!r:.80}",
                        plugin=record.name,
                        distribution=record.distribution,
                    )
                for spec in result:
                    validate_spec(spec, plugin=record.name, distribution=record.distribution)
                    staged.append(spec)
            patterns: dict[str, Callable[[int], list[str]]] = {}
            for impl in impls["hybridzoo_named_patterns"]:
                result = impl.function()
                if not isinstance(result, dict) or not all(
                    isinstance(k, str) and callable(v) for k, v in result.items()
                ):
                    raise PluginError(
                        f"{where}: hybridzoo_named_patterns() must return a dict of "
                        f"name -> callable(num_layers), got {result!r:.80}",
                        plugin=record.name,
                        distribution=record.distribution,
                    )
                patterns.update(result)
        except Exception as exc:
            pm.unregister(plugin)
            msg = str(exc) if isinstance(exc, PluginError) else f"{where}: hook raised {exc!r}"
            self._fail(record, msg, exc)
            return
        for spec in staged:
            try:
                self._add(spec, record.name, record.distribution, record.version, replace=False)
            except PluginConflictError as exc:
                self._fail(record, str(exc), exc, contested=True)
                continue
            record.layers.append(spec.name)
        for name, rule in patterns.items():
            if name in self._patterns:
                other = self._patterns[name][1]
                self._fail(
                    record,
                    f"{where} defines the named pattern {name!r}, already defined by {other}",
                    contested=True,
                )
                continue
            self._patterns[name] = (rule, record.distribution or record.name)
            record.patterns.append(name)

    def _fail(
        self,
        record: PluginRecord,
        message: str,
        exc: BaseException | None = None,
        *,
        contested: bool = False,
    ) -> None:
        if not contested or record.status != "loaded" or not record.layers:
            record.status = "failed"
        if "HYBRIDZOO_DISABLE_PLUGINS" not in message:
            message += f" To skip this plugin: HYBRIDZOO_DISABLE_PLUGINS={record.name}."
        record.error = message if record.error is None else f"{record.error}; {message}"
        if self.strict:
            error_cls = PluginConflictError if contested else PluginError
            raise error_cls(
                f"{message} (strict plugin mode: HYBRIDZOO_STRICT_PLUGINS)",
                plugin=record.name,
                distribution=record.distribution,
            ) from exc
        if exc is not None and not isinstance(exc, PluginError):
            record.error += "\n" + "".join(traceback.format_exception_only(type(exc), exc)).strip()

    # -- adding and removing ------------------------------------------------------------------

    @staticmethod
    def _who(entry: _Entry) -> str:
        if entry.distribution:
            return f"{entry.spec.name!r} (distribution {entry.distribution!r})"
        return f"{entry.spec.name!r} (registered at run time)"

    def _add(
        self,
        spec: LayerSpec,
        plugin: str,
        distribution: str | None,
        version: str | None,
        *,
        replace: bool,
    ) -> None:
        new = _Entry(spec, plugin, distribution, version)
        clashes: list[tuple[str, str, _Entry]] = []  # (key, what, holder)
        old = self._entries.get(spec.name)
        if old is not None and not replace:
            clashes.append((f"name:{spec.name}", f"the name {spec.name!r}", old))
        holder = self._symbols.get(spec.symbol)
        if holder is not None and holder != spec.name:
            clashes.append(
                (f"symbol:{spec.symbol}", f"the symbol {spec.symbol!r}", self._entries[holder])
            )
        holder = self._prefixes.get(spec.option_prefix)
        if holder is not None and holder != spec.name:
            clashes.append(
                (
                    f"prefix:{spec.option_prefix}",
                    f"the option prefix {spec.option_prefix!r}",
                    self._entries[holder],
                )
            )
        if clashes:
            problems = "; ".join(
                f"{what} is already used by {self._who(h)}" for _, what, h in clashes
            )
            source = f"distribution {distribution!r}" if distribution else "run-time registration"
            fix = (
                f"rename it, or disable one plugin with HYBRIDZOO_DISABLE_PLUGINS={plugin}"
                if distribution
                else "choose another name/symbol/prefix, or pass replace=True to replace a layer "
                "of the same name"
            )
            message = (
                f"layer {spec.name!r} from {source} was not registered: {problems}. Fix: {fix}."
            )
            if distribution:  # an installed plugin: using the contested keys is an error
                for key, _, _ in clashes:
                    self._contested[key] = message
                self._contested.setdefault(f"name:{spec.name}", message)
            raise PluginConflictError(message, plugin=plugin, distribution=distribution)
        if old is not None:
            self._remove(spec.name)
        self._entries[spec.name] = new
        self._symbols[spec.symbol] = spec.name
        self._prefixes[spec.option_prefix] = spec.name

    def _remove(self, name: str) -> _Entry:
        entry = self._entries.pop(name)
        self._symbols.pop(entry.spec.symbol, None)
        self._prefixes.pop(entry.spec.option_prefix, None)
        return entry

    def register(self, spec: LayerSpec, *, replace: bool = False) -> LayerSpec:
        """Register a layer defined at run time (validated like an entry-point one).

        Args:
            spec: the layer.
            replace: replace a registered layer of the same name (its symbol and prefix may
                change); without it a taken name is an error. A symbol or option prefix taken by
                a *different* layer is always an error.

        Returns the spec, so the call can be used as an expression.
        """
        validate_spec(spec, plugin=RUNTIME)
        with self._lock:
            self.load()
            self._add(spec, RUNTIME, None, None, replace=replace)
        return spec

    def unregister(self, name: str) -> LayerSpec:
        """Remove a layer (any origin); returns its spec."""
        with self._lock:
            self.load()
            if name not in self._entries:
                raise UnknownLayerError(name, list(self._entries))
            return self._remove(name).spec

    @contextlib.contextmanager
    def registered(self, *specs: LayerSpec, replace: bool = False) -> Iterator[list[LayerSpec]]:
        """Register ``specs`` for the duration of a ``with`` block (tests), then restore."""
        with self._lock:
            self.load()
            saved = (dict(self._entries), dict(self._symbols), dict(self._prefixes))
        try:
            for spec in specs:
                self.register(spec, replace=replace)
            yield list(specs)
        finally:
            with self._lock:
                self._entries, self._symbols, self._prefixes = saved

    # -- queries -------------------------------------------------------------------------------

    def _check_contested(self, key: str) -> None:
        if key in self._contested:
            raise PluginConflictError(self._contested[key])

    def get(self, name: str) -> LayerSpec:
        """The spec of the layer called ``name`` (:class:`UnknownLayerError` with close matches)."""
        self.load()
        self._check_contested(f"name:{name}")
        entry = self._entries.get(name)
        if entry is None:
            raise UnknownLayerError(name, list(self._entries))
        return entry.spec

    def by_symbol(self, symbol: str) -> LayerSpec:
        """The spec whose one-letter symbol is ``symbol``."""
        self.load()
        self._check_contested(f"symbol:{symbol}")
        name = self._symbols.get(symbol)
        if name is None:
            known = sorted(self._symbols)
            raise UnknownLayerError(symbol, known, what="layer symbol")
        return self._entries[name].spec

    def by_prefix(self, prefix: str) -> LayerSpec | None:
        """The spec whose option prefix is ``prefix``, or ``None``."""
        self.load()
        self._check_contested(f"prefix:{prefix}")
        name = self._prefixes.get(prefix)
        return None if name is None else self._entries[name].spec

    def resolve(self, token: str) -> LayerSpec:
        """A layer given by name or by symbol."""
        self.load()
        self._check_contested(f"name:{token}")
        if token in self._entries:
            return self._entries[token].spec
        if len(token) == 1 and (token in self._symbols or f"symbol:{token}" in self._contested):
            return self.by_symbol(token)
        raise UnknownLayerError(token, [*self._entries, *self._symbols])

    def names(self) -> list[str]:
        """Registered layer names, sorted."""
        self.load()
        return sorted(self._entries)

    def specs(self) -> list[LayerSpec]:
        """Registered specs, sorted by name."""
        return [self._entries[n].spec for n in self.names()]

    def list(self, pattern: str = "*") -> list[str]:
        """Layer names matching a shell-style ``pattern`` (``"*mamba*"``)."""
        return [n for n in self.names() if fnmatch.fnmatchcase(n, pattern)]

    def source(self, name: str) -> tuple[str | None, str | None]:
        """``(distribution, version)`` that supplied a layer; ``(None, None)`` at run time."""
        self.load()
        entry = self._entries.get(name)
        if entry is None:
            raise UnknownLayerError(name, list(self._entries))
        return entry.distribution, entry.version

    def contested(self) -> dict[str, str]:
        """Names, symbols and prefixes that two plugins claim (``"symbol:M"`` → explanation);
        using one of them is an error."""
        self.load()
        return dict(self._contested)

    def plugins(self) -> list[PluginRecord]:
        """Every entry-point plugin seen, with its status, plus one record for run-time layers."""
        self.load()
        records = list(self._plugins)
        runtime = sorted(n for n, e in self._entries.items() if e.plugin == RUNTIME)
        if runtime:
            records.append(PluginRecord(RUNTIME, None, None, None, layers=runtime))
        return records

    def failures(self) -> list[PluginRecord]:
        """The plugins that failed to load (or loaded only in part)."""
        return [p for p in self.plugins() if p.error is not None and p.status != "disabled"]

    def named_patterns(self) -> dict[str, Callable[[int], list[str]]]:
        """Named patterns contributed by plugins (the builtin ones live in ``patterns``)."""
        self.load()
        return {name: rule for name, (rule, _) in self._patterns.items()}

    def __contains__(self, name: object) -> bool:
        self.load()
        return name in self._entries

    def __iter__(self) -> Iterator[LayerSpec]:
        return iter(self.specs())

    def __len__(self) -> int:
        self.load()
        return len(self._entries)

    def __repr__(self) -> str:
        state = f"{len(self._entries)} layers" if self._loaded else "not loaded yet"
        return f"<hybridzoo.Registry {state}>"


_default: Registry | None = None
_default_lock = threading.Lock()


def get_registry() -> Registry:
    """The default registry (created on first use)."""
    global _default
    if _default is None:
        with _default_lock:
            if _default is None:
                _default = Registry()
    return _default


@contextlib.contextmanager
def use_registry(registry: Registry) -> Iterator[Registry]:
    """Make ``registry`` the default inside a ``with`` block (tests, isolated experiments)."""
    global _default
    previous = _default
    _default = registry
    try:
        yield registry
    finally:
        _default = previous

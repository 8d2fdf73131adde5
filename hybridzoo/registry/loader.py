"""The registry's loader: entry points -> plugin records and their specs, one plugin at a time.

Entry points of the group ``hybridzoo.layers`` are read in a fixed order (distribution name, then
entry-point name). Each plugin is isolated: whatever its import or its hooks raise (``SystemExit``
included: a plugin never ends the process) is recorded on its :class:`PluginRecord` with its
distribution and a fix, and the others load; in strict mode the failure raises instead. Only
``KeyboardInterrupt`` goes through, after this plugin's half-made contributions are dropped (the
registry then rolls back the whole load, see :meth:`hybridzoo.Registry.load`).

Environment switches (read when a :class:`~hybridzoo.Registry` is created):

``HYBRIDZOO_DISABLE_PLUGIN_AUTOLOAD=1``
    load no entry points (only layers registered at run time exist).
``HYBRIDZOO_DISABLE_PLUGINS=a,b``
    skip these plugins (entry-point names or distribution names); they are not imported.
``HYBRIDZOO_STRICT_PLUGINS=1``
    raise on the first plugin failure instead of recording it.
"""

from __future__ import annotations

import importlib.metadata as md
import os
import traceback
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal

import attrs
import pluggy

from hybridzoo.errors import PluginConflictError, PluginError
from hybridzoo.hookspecs import PROJECT_NAME, HookSpecs
from hybridzoo.named_patterns import NamedPattern, validate_named_pattern
from hybridzoo.registry.index import Index, LayerEntry, PatternEntry
from hybridzoo.spec import LayerSpec, validate_spec

__all__ = ["ENTRY_POINT_GROUP", "Loader", "PluginRecord", "env_flag", "env_list"]

ENTRY_POINT_GROUP = "hybridzoo.layers"
HOOKS = ("hybridzoo_layer_specs", "hybridzoo_named_patterns")
_TRUE = {"1", "true", "yes", "on"}


def env_flag(name: str) -> bool:
    """An environment switch: ``1``, ``true``, ``yes`` or ``on`` (any case)."""
    return os.environ.get(name, "").strip().lower() in _TRUE


def env_list(name: str) -> frozenset[str]:
    """A comma-separated environment list."""
    return frozenset(p.strip() for p in os.environ.get(name, "").split(",") if p.strip())


def find_entry_points(
    group: str, given: Iterable[md.EntryPoint] | None = None
) -> list[md.EntryPoint]:
    """The entry points of ``group`` (or ``given``), without duplicates, in (distribution, name)
    order: the order every group of hybridzoo's plugins is loaded in."""
    eps = given if given is not None else md.entry_points(group=group)
    unique: dict[tuple[str, str], md.EntryPoint] = {}
    for ep in eps:
        unique.setdefault((ep.name, ep.value), ep)

    def key(ep: md.EntryPoint) -> tuple[str, str]:
        dist = getattr(ep, "dist", None)
        return ((dist.name if dist else "") or "", ep.name)

    return sorted(unique.values(), key=key)


def is_disabled(ep: md.EntryPoint, disabled: Iterable[str]) -> bool:
    """Whether ``ep`` is named, by its own name or its distribution's, in ``disabled``."""
    dist = getattr(ep, "dist", None)
    names = set(disabled)
    return ep.name in names or (dist is not None and dist.name in names)


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


def _describe(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}"
    if isinstance(exc, SystemExit):
        text += " (a plugin must not exit the process)"
    return text


def _as_list(result: object, what: str, kind: str) -> list[Any]:
    if isinstance(result, list | tuple):
        return list(result)
    raise PluginError(
        f"{what} must return a list of {kind}, got {type(result).__name__}: {result!r:.80}"
    )


class Loader:
    """Reads entry points into an :class:`~hybridzoo.registry.index.Index` (see module doc).

    pluggy is used for what it does well here: the hook specifications, validating each
    plugin's hook implementations against them (a misspelt ``hybridzoo_*`` hook is an error)
    and finding the implementations of one plugin. Entry points are read here, not with
    ``PluginManager.load_setuptools_entrypoints``, because that stops at the first plugin that
    fails to import, keys plugins by entry-point name (a second distribution using a taken name
    would be skipped silently) and knows no disable list by distribution.
    """

    def __init__(
        self, *, group: str = ENTRY_POINT_GROUP, entry_points: Sequence[md.EntryPoint] | None = None
    ) -> None:
        self.group = group
        self._given = list(entry_points) if entry_points is not None else None
        self.plugin_manager = self._new_manager()
        #: the plugin being loaded (names the culprit when a load is interrupted)
        self.current: PluginRecord | None = None

    @staticmethod
    def _new_manager() -> pluggy.PluginManager:
        pm = pluggy.PluginManager(PROJECT_NAME)
        pm.add_hookspecs(HookSpecs)
        return pm

    def reset(self) -> None:
        """Forget every plugin registered with pluggy (after a load is rolled back)."""
        self.plugin_manager = self._new_manager()
        self.current = None

    def entry_points(self) -> list[md.EntryPoint]:
        """The entry points to load, without duplicates, in (distribution, name) order."""
        return find_entry_points(self.group, self._given)

    def load(
        self, ep: md.EntryPoint, index: Index, *, disabled: Iterable[str], strict: bool
    ) -> PluginRecord:
        """Load one entry point into ``index``; returns its record (failures recorded there)."""
        dist = getattr(ep, "dist", None)
        record = PluginRecord(
            ep.name, dist.name if dist else None, dist.version if dist else None, ep.value
        )
        self.current = record
        if is_disabled(ep, disabled):
            record.status = "disabled"
            record.error = "disabled by HYBRIDZOO_DISABLE_PLUGINS"
            return record
        where = f"plugin {ep.name!r} ({ep.value}) from distribution {record.distribution or '?'!r}"
        try:
            plugin = ep.load()
        except KeyboardInterrupt:
            raise
        except BaseException as exc:  # SystemExit too: a plugin never takes the process down
            message = (
                f"{where} failed to import: {_describe(exc)}. Fix the plugin, or skip it with "
                f"HYBRIDZOO_DISABLE_PLUGINS={ep.name}."
            )
            self._fail(record, message, exc, strict=strict)
            return record
        made = self._contributions(plugin, record, where, strict=strict)
        if made is None:
            return record
        specs, patterns = made
        for spec in specs:
            try:
                index.add_layer(LayerEntry(spec, record.name, record.distribution, record.version))
            except PluginConflictError as exc:
                self._fail(record, str(exc), exc, strict=strict, contested=True)
                continue
            record.layers.append(spec.name)
        for pattern in patterns:
            try:
                index.add_pattern(PatternEntry(pattern, record.name, record.distribution))
            except PluginConflictError as exc:
                self._fail(record, str(exc), exc, strict=strict, contested=True)
                continue
            record.patterns.append(pattern.name)
        return record

    def _contributions(
        self, plugin: object, record: PluginRecord, where: str, *, strict: bool
    ) -> tuple[list[LayerSpec], list[NamedPattern]] | None:
        """Register ``plugin`` with pluggy and call its hooks; ``None`` (recorded) on failure."""
        pm = self.plugin_manager
        try:
            # the pluggy name must be unique: two distributions may use one entry-point name
            pm.register(plugin, name=f"{record.distribution or '?'}:{record.name}")
            pm.check_pending()  # a misspelt hybridzoo_* hook
        except Exception as exc:
            if pm.is_registered(plugin):
                pm.unregister(plugin)
            self._fail(record, f"{where} has invalid hooks: {exc}", exc, strict=strict)
            return None
        impls = {
            hook: [i for i in getattr(pm.hook, hook).get_hookimpls() if i.plugin is plugin]
            for hook in HOOKS
        }
        if not any(impls.values()):
            pm.unregister(plugin)
            message = (
                f"{where} implements no hybridzoo hook: mark a function "
                "`hybridzoo_layer_specs()` with @hybridzoo.hookimpl (hybridzoo.plugin.hookimpl)."
            )
            self._fail(record, message, strict=strict)
            return None
        who = {"plugin": record.name, "distribution": record.distribution}
        try:
            specs: list[LayerSpec] = []
            for impl in impls["hybridzoo_layer_specs"]:
                result = impl.function()
                result = [result] if isinstance(result, LayerSpec) else result
                for spec in _as_list(result, f"{where}: hybridzoo_layer_specs()", "LayerSpec"):
                    validate_spec(spec, **who)
                    specs.append(spec)
            patterns: list[NamedPattern] = []
            for impl in impls["hybridzoo_named_patterns"]:
                patterns.extend(_named_patterns(impl.function(), where, record))
            for pattern in patterns:
                validate_named_pattern(pattern, **who)
        except KeyboardInterrupt:
            pm.unregister(plugin)
            raise
        except BaseException as exc:
            pm.unregister(plugin)
            msg = str(exc) if isinstance(exc, PluginError) else f"{where}: hook raised {exc!r}"
            self._fail(record, msg, exc, strict=strict)
            return None
        return specs, patterns

    def _fail(
        self,
        record: PluginRecord,
        message: str,
        exc: BaseException | None = None,
        *,
        strict: bool,
        contested: bool = False,
    ) -> None:
        if not contested or record.status != "loaded" or not (record.layers or record.patterns):
            record.status = "failed"
        if "HYBRIDZOO_DISABLE_PLUGINS" not in message:
            message += f" To skip this plugin: HYBRIDZOO_DISABLE_PLUGINS={record.name}."
        record.error = message if record.error is None else f"{record.error}; {message}"
        if strict:
            error_cls = PluginConflictError if contested else PluginError
            raise error_cls(
                f"{message} (strict plugin mode: HYBRIDZOO_STRICT_PLUGINS)",
                plugin=record.name,
                distribution=record.distribution,
            ) from exc
        if exc is not None and not isinstance(exc, PluginError):
            record.error += "\n" + "".join(traceback.format_exception_only(type(exc), exc)).strip()


def _named_patterns(result: object, where: str, record: PluginRecord) -> list[NamedPattern]:
    """A ``hybridzoo_named_patterns`` result as records: a list of :class:`NamedPattern`, or
    the API version 1 form, a dict of name -> ``function(num_layers)`` (its layers unknown)."""
    if isinstance(result, NamedPattern):
        return [result]
    if not isinstance(result, Mapping):
        return _as_list(result, f"{where}: hybridzoo_named_patterns()", "NamedPattern")
    out = []
    for name, value in result.items():
        if isinstance(value, NamedPattern) and value.name == name:
            out.append(value)
        elif isinstance(name, str) and callable(value) and not isinstance(value, NamedPattern):
            rule = f"(a rule from {record.distribution or record.name})"
            out.append(NamedPattern(name, (), rule, function=value))
        else:
            raise PluginError(
                f"{where}: hybridzoo_named_patterns() must return NamedPattern records, or a "
                f"dict of name -> callable(num_layers); got {name!r}: {value!r:.80}",
                plugin=record.name,
                distribution=record.distribution,
            )
    return out

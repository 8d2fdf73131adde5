"""The layer registry: entry-point discovery, run-time registration, conflicts.

A :class:`Registry` joins two parts: the loader (:mod:`hybridzoo.registry.loader`: entry points
to plugin records, isolation, the environment switches) and the index
(:mod:`hybridzoo.registry.index`: layer names, symbols, option prefixes and names, named patterns,
and the keys two plugins claim). Entry points are loaded lazily, on first use; the builtin layers
are found exactly like third-party ones. A plugin that fails is recorded with its distribution
and the reason, and the others load (strict mode raises instead).

Environment variables (read when a :class:`Registry` is created):
``HYBRIDZOO_DISABLE_PLUGIN_AUTOLOAD=1`` (no entry points), ``HYBRIDZOO_DISABLE_PLUGINS=a,b``
(skip these entry-point or distribution names), ``HYBRIDZOO_STRICT_PLUGINS=1`` (raise on the first
plugin failure).
"""

from __future__ import annotations

import contextlib
import fnmatch
import importlib.metadata as md
import threading
from collections.abc import Iterator, Sequence

import pluggy

from hybridzoo.errors import PatternError, PluginError, UnknownLayerError, did_you_mean
from hybridzoo.named_patterns import NamedPattern, validate_named_pattern
from hybridzoo.registry.index import Claim, Index, LayerEntry, PatternEntry
from hybridzoo.registry.loader import ENTRY_POINT_GROUP, Loader, PluginRecord, env_flag, env_list
from hybridzoo.spec import LayerSpec, validate_spec

__all__ = [
    "ENTRY_POINT_GROUP",
    "RUNTIME",
    "Claim",
    "PluginRecord",
    "Registry",
    "get_registry",
    "use_registry",
]

#: The plugin name of everything registered at run time.
RUNTIME = "<runtime>"


class Registry:
    """A set of layer specs and named patterns: from entry points and registered at run time.

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
        env_autoload = not env_flag("HYBRIDZOO_DISABLE_PLUGIN_AUTOLOAD")
        self.autoload = env_autoload if autoload is None else autoload
        self.strict = env_flag("HYBRIDZOO_STRICT_PLUGINS") if strict is None else strict
        self.disabled = (
            frozenset(disabled) if disabled is not None else env_list("HYBRIDZOO_DISABLE_PLUGINS")
        )
        self.group = group
        #: the plugin whose loading a ``KeyboardInterrupt`` stopped last (``None`` otherwise)
        self.interrupted: PluginRecord | None = None
        self._loader = Loader(group=group, entry_points=entry_points)
        self._lock = threading.RLock()
        self._loaded = False
        self._index = Index()
        self._plugins: list[PluginRecord] = []

    @property
    def plugin_manager(self) -> pluggy.PluginManager:
        """The pluggy manager of the loaded plugins (hooks of :mod:`hybridzoo.hookspecs`)."""
        return self._loader.plugin_manager

    # -- loading -------------------------------------------------------------------------------

    def load(self) -> None:
        """Load the entry-point plugins now (idempotent; normally done on first use).

        Whatever stops the load part-way (``KeyboardInterrupt`` during a slow plugin import, or
        a failure in strict mode) rolls it back: the registry is left as before, not loaded, and
        the next use loads again. After a ``KeyboardInterrupt``, :attr:`interrupted` names the
        plugin being loaded (and so does a note on the exception, on Python >= 3.11).
        """
        with self._lock:
            if self._loaded:
                return
            self._loaded = True  # a plugin that registers a layer at import finds us loaded
            if not self.autoload:
                return
            saved = (self._index.copy(), list(self._plugins))
            try:
                for ep in self._loader.entry_points():
                    record = self._loader.load(
                        ep, self._index, disabled=self.disabled, strict=self.strict
                    )
                    self._plugins.append(record)
            except BaseException as exc:
                culprit = self._loader.current
                self._index, self._plugins = saved
                self._loader.reset()
                self._loaded = False
                if isinstance(exc, KeyboardInterrupt) and culprit is not None:
                    self.interrupted = culprit
                    if hasattr(exc, "add_note"):
                        exc.add_note(
                            f"(interrupted while loading the hybridzoo plugin {culprit.name!r} "
                            f"from distribution {culprit.distribution or '?'!r})"
                        )
                raise
            self.interrupted = None
            self._loader.current = None

    # -- adding and removing ------------------------------------------------------------------

    def _add(self, item: LayerSpec | NamedPattern, replace: bool) -> tuple[object, object | None]:
        """Register ``item`` at run time; ``(new entry, replaced entry or None)``."""
        if isinstance(item, NamedPattern):
            validate_named_pattern(item, plugin=RUNTIME)
            entry: object = PatternEntry(item, RUNTIME)
            with self._lock:
                self.load()
                return entry, self._index.add_pattern(entry, replace=replace)  # type: ignore[arg-type]
        validate_spec(item, plugin=RUNTIME)
        entry = LayerEntry(item, RUNTIME)
        with self._lock:
            self.load()
            return entry, self._index.add_layer(entry, replace=replace)  # type: ignore[arg-type]

    def register(self, spec: LayerSpec, *, replace: bool = False) -> LayerSpec:
        """Register a layer defined at run time (validated like an entry-point one).

        Args:
            spec: the layer.
            replace: replace a registered layer of the same name (its symbol and prefix may
                change); without it a taken name is an error. A symbol, option prefix or option
                name taken by a *different* layer is always an error.

        Returns the spec, so the call can be used as an expression.
        """
        if isinstance(spec, NamedPattern):
            raise PluginError(
                f"register() takes a LayerSpec; register the named pattern {spec.name!r} with "
                "register_pattern()",
                plugin=RUNTIME,
            )
        self._add(spec, replace)
        return spec

    def register_pattern(self, pattern: NamedPattern, *, replace: bool = False) -> NamedPattern:
        """Register a named pattern at run time; a taken name is an error unless ``replace``."""
        if not isinstance(pattern, NamedPattern):
            validate_named_pattern(pattern, plugin=RUNTIME)  # raises, naming what was given
        self._add(pattern, replace)
        return pattern

    def unregister(self, name: str) -> LayerSpec:
        """Remove a layer (any origin); returns its spec."""
        with self._lock:
            self.load()
            if name not in self._index.layers:
                raise UnknownLayerError(name, list(self._index.layers))
            return self._index.remove_layer(name).spec

    def unregister_pattern(self, name: str) -> NamedPattern:
        """Remove a named pattern (any origin); returns it."""
        with self._lock:
            pattern = self.named_pattern(name)
            del self._index.patterns[name]
            return pattern

    @contextlib.contextmanager
    def registered(
        self, *items: LayerSpec | NamedPattern, replace: bool = False
    ) -> Iterator[list[LayerSpec | NamedPattern]]:
        """Register layer specs and named patterns for the duration of a ``with`` block.

        On exit only what the block added is removed (and what it replaced is put back):
        registrations made inside the block by other means survive it.
        """
        added: list[tuple[object, object | None]] = []
        try:
            for item in items:
                added.append(self._add(item, replace))
            yield list(items)
        finally:
            with self._lock:
                for entry, old in reversed(added):
                    self._undo(entry, old)

    def _undo(self, entry: object, old: object | None) -> None:
        if isinstance(entry, PatternEntry):
            name = entry.pattern.name
            if self._index.patterns.get(name) is entry:
                del self._index.patterns[name]
                if old is not None:
                    self._index.patterns[name] = old  # type: ignore[assignment]
            return
        assert isinstance(entry, LayerEntry)
        name = entry.spec.name
        if self._index.layers.get(name) is not entry:
            return  # replaced or removed inside the block: not ours any more
        self._index.remove_layer(name)
        if old is not None and not self._index.clashes(old.spec, False):  # type: ignore[attr-defined]
            self._index.add_layer(old)  # type: ignore[arg-type]

    # -- queries -------------------------------------------------------------------------------

    def get(self, name: str) -> LayerSpec:
        """The spec of the layer called ``name`` (:class:`UnknownLayerError` with close matches)."""
        self.load()
        self._index.check(Claim("name", name))
        entry = self._index.layers.get(name)
        if entry is None:
            raise UnknownLayerError(name, list(self._index.layers))
        return entry.spec

    def by_symbol(self, symbol: str) -> LayerSpec:
        """The spec whose one-letter symbol is ``symbol``."""
        self.load()
        self._index.check(Claim("symbol", symbol))
        name = self._index.symbols.get(symbol)
        if name is None:
            raise UnknownLayerError(symbol, sorted(self._index.symbols), what="layer symbol")
        return self._index.layers[name].spec

    def by_prefix(self, prefix: str) -> LayerSpec | None:
        """The spec whose option prefix is ``prefix``, or ``None``."""
        self.load()
        self._index.check(Claim("prefix", prefix))
        name = self._index.prefixes.get(prefix)
        return None if name is None else self._index.layers[name].spec

    def check_option(self, option: str) -> None:
        """Raise :class:`~hybridzoo.PluginConflictError` if two layers claim the user option
        ``option`` (their prefixes overlap); nothing otherwise."""
        self.load()
        self._index.check(Claim("option", option))

    def resolve(self, token: str) -> LayerSpec:
        """A layer given by name or by symbol."""
        self.load()
        self._index.check(Claim("name", token))
        if token in self._index.layers:
            return self._index.layers[token].spec
        if len(token) == 1 and (
            token in self._index.symbols or Claim("symbol", token) in self._index.contested
        ):
            return self.by_symbol(token)
        raise UnknownLayerError(token, [*self._index.layers, *self._index.symbols])

    def names(self) -> list[str]:
        """Registered layer names, sorted."""
        self.load()
        return sorted(self._index.layers)

    def specs(self) -> list[LayerSpec]:
        """Registered specs, sorted by name."""
        return [self._index.layers[n].spec for n in self.names()]

    def list(self, pattern: str = "*") -> list[str]:
        """Layer names matching a shell-style ``pattern`` (``"*conv*"``)."""
        return [n for n in self.names() if fnmatch.fnmatchcase(n, pattern)]

    def source(self, name: str) -> tuple[str | None, str | None]:
        """``(distribution, version)`` that supplied a layer; ``(None, None)`` at run time."""
        self.load()
        entry = self._index.layers.get(name)
        if entry is None:
            raise UnknownLayerError(name, list(self._index.layers))
        return entry.distribution, entry.version

    def conflicts(self) -> dict[Claim, str]:
        """The keys two plugins claim (:class:`Claim` -> explanation); using one is an error."""
        self.load()
        return dict(self._index.contested)

    def contested(self) -> dict[str, str]:
        """:meth:`conflicts` with the keys as strings (``"symbol:M"``), as in the JSON listing."""
        return {str(claim): why for claim, why in self.conflicts().items()}

    def plugins(self) -> list[PluginRecord]:
        """Every entry-point plugin seen, with its status, plus one record for run-time
        registrations."""
        self.load()
        records = list(self._plugins)
        layers = sorted(n for n, e in self._index.layers.items() if e.plugin == RUNTIME)
        patterns = [n for n, e in self._index.patterns.items() if e.plugin == RUNTIME]
        if layers or patterns:
            records.append(
                PluginRecord(RUNTIME, None, None, None, layers=layers, patterns=patterns)
            )
        return records

    def failures(self) -> list[PluginRecord]:
        """The plugins that failed to load (or loaded only in part)."""
        return [p for p in self.plugins() if p.error is not None and p.status != "disabled"]

    def named_patterns(self) -> dict[str, NamedPattern]:
        """Every registered named pattern, in registration order (each is also callable as
        ``pattern(num_layers)``, the API version 1 form)."""
        self.load()
        return {name: e.pattern for name, e in self._index.patterns.items()}

    def named_pattern(self, name: str) -> NamedPattern:
        """The named pattern ``name`` (:class:`~hybridzoo.PatternError` with close matches)."""
        self.load()
        self._index.check(Claim("pattern", name))
        entry = self._index.patterns.get(name)
        if entry is None:
            known = list(self._index.patterns)
            raise PatternError(
                f"unknown named pattern {name!r}.{did_you_mean(name, known)} "
                f"Named patterns: {', '.join(sorted(known)) or '(none registered)'}"
            )
        return entry.pattern

    def pattern_source(self, name: str) -> str | None:
        """The distribution that supplied a named pattern (``None``: registered at run time)."""
        self.load()
        entry = self._index.patterns.get(name)
        if entry is None:
            self.named_pattern(name)  # raises, with the close matches
        return None if entry is None else entry.distribution

    def __contains__(self, name: object) -> bool:
        self.load()
        return name in self._index.layers

    def __iter__(self) -> Iterator[LayerSpec]:
        return iter(self.specs())

    def __len__(self) -> int:
        self.load()
        return len(self._index.layers)

    def __repr__(self) -> str:
        state = f"{len(self._index.layers)} layers" if self._loaded else "not loaded yet"
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

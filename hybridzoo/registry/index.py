"""The registry's index: layer names, symbols, option prefixes and named patterns, and the claims
that two plugins make on one of them (conflicts, as typed keys).

The index knows nothing of entry points: the loader (:mod:`hybridzoo.registry.loader`) and
run-time registration add to it. A claim that clashes is refused with a
:class:`~hybridzoo.PluginConflictError` naming both holders; when an installed plugin made it,
the key stays *contested*: using it is an error until one plugin is renamed or disabled.
"""

from __future__ import annotations

from typing import Literal, NamedTuple

import attrs

from hybridzoo.errors import PluginConflictError
from hybridzoo.named_patterns import NamedPattern
from hybridzoo.spec import LayerSpec

__all__ = ["Claim", "Index", "LayerEntry", "PatternEntry"]

ClaimKind = Literal["name", "symbol", "prefix", "option", "pattern"]


class Claim(NamedTuple):
    """What a plugin claims: a layer ``name``, ``symbol``, option ``prefix``, a user-facing
    ``option`` name (``<prefix>_<field>``) or a named ``pattern``; ``str()`` gives
    ``"kind:value"`` (the form in ``hybridzoo plugins --json``)."""

    kind: ClaimKind
    value: str

    def __str__(self) -> str:
        return f"{self.kind}:{self.value}"


@attrs.define
class LayerEntry:
    """A registered layer and where it came from (``distribution`` None: run time)."""

    spec: LayerSpec
    plugin: str
    distribution: str | None = None
    version: str | None = None

    def who(self) -> str:
        if self.distribution:
            return f"{self.spec.name!r} (distribution {self.distribution!r})"
        return f"{self.spec.name!r} (registered at run time)"


@attrs.define
class PatternEntry:
    """A registered named pattern and where it came from."""

    pattern: NamedPattern
    plugin: str
    distribution: str | None = None

    def who(self) -> str:
        if self.distribution:
            return f"distribution {self.distribution!r}"
        return "a run-time registration"


def _source(distribution: str | None) -> str:
    return f"distribution {distribution!r}" if distribution else "run-time registration"


def _disable_fix(plugin: str) -> str:
    return f"rename it, or disable one plugin with HYBRIDZOO_DISABLE_PLUGINS={plugin}"


class Index:
    """Names, symbols, prefixes and named patterns; see the module docstring."""

    def __init__(self) -> None:
        self.layers: dict[str, LayerEntry] = {}
        self.symbols: dict[str, str] = {}
        self.prefixes: dict[str, str] = {}
        self.options: dict[str, tuple[str, str]] = {}  # user option -> (layer, field)
        self.patterns: dict[str, PatternEntry] = {}
        self.contested: dict[Claim, str] = {}

    def copy(self) -> Index:
        """A copy whose tables can change independently (the entries are shared)."""
        new = Index()
        for table in ("layers", "symbols", "prefixes", "options", "patterns", "contested"):
            setattr(new, table, dict(getattr(self, table)))
        return new

    def check(self, claim: Claim) -> None:
        """Raise :class:`~hybridzoo.PluginConflictError` if two plugins claim ``claim``."""
        if claim in self.contested:
            raise PluginConflictError(self.contested[claim])

    # -- layers ------------------------------------------------------------------------------

    def clashes(self, spec: LayerSpec, replace: bool) -> list[tuple[Claim, str, str]]:
        """``(claim, what, holder)`` for every key of ``spec`` another layer holds."""
        clashes: list[tuple[Claim, str, str]] = []
        old = self.layers.get(spec.name)
        if old is not None and not replace:
            clashes.append((Claim("name", spec.name), f"the name {spec.name!r}", old.who()))

        def other(holder: str | None) -> LayerEntry | None:
            return None if holder is None or holder == spec.name else self.layers[holder]

        holder = other(self.symbols.get(spec.symbol))
        if holder is not None:
            clashes.append(
                (Claim("symbol", spec.symbol), f"the symbol {spec.symbol!r}", holder.who())
            )
        holder = other(self.prefixes.get(spec.option_prefix))
        if holder is not None:
            what = f"the option prefix {spec.option_prefix!r}"
            clashes.append((Claim("prefix", spec.option_prefix), what, holder.who()))
            return clashes  # equal prefixes: every option name collides, no need to list them
        for name in spec.option_names():
            layer, field = self.options.get(name, (None, ""))
            holder = other(layer)
            if holder is not None:
                what = (
                    f"the option name {name!r} (prefix {spec.option_prefix!r} + field "
                    f"{name[len(spec.option_prefix) + 1 :]!r}; the prefixes overlap)"
                )
                clashes.append((Claim("option", name), what, f"{holder.who()} for its {field!r}"))
        return clashes

    def add_layer(self, entry: LayerEntry, *, replace: bool = False) -> LayerEntry | None:
        """Add a layer; returns the entry it replaced (``replace=True`` and the same name).

        A name (unless ``replace``), symbol, option prefix or option name held by another
        layer is a :class:`~hybridzoo.PluginConflictError` naming both; when ``entry`` comes
        from a distribution, the clashing keys and its name become contested.
        """
        spec = entry.spec
        clashes = self.clashes(spec, replace)
        if clashes:
            problems = "; ".join(f"{what} is already used by {who}" for _, what, who in clashes)
            if entry.distribution:
                fix = _disable_fix(entry.plugin)
            else:
                fix = (
                    "choose another name/symbol/prefix (a prefix must not be another prefix "
                    "followed by '_' and part of its field names), or pass replace=True to "
                    "replace a layer of the same name"
                )
            message = (
                f"layer {spec.name!r} from {_source(entry.distribution)} was not registered: "
                f"{problems}. Fix: {fix}."
            )
            if entry.distribution:  # an installed plugin: using the contested keys is an error
                for claim, _, _ in clashes:
                    self.contested[claim] = message
                self.contested.setdefault(Claim("name", spec.name), message)
            raise PluginConflictError(message, plugin=entry.plugin, distribution=entry.distribution)
        old = self.remove_layer(spec.name) if spec.name in self.layers else None
        self.layers[spec.name] = entry
        self.symbols[spec.symbol] = spec.name
        self.prefixes[spec.option_prefix] = spec.name
        for field, name in zip(attrs.fields(spec.options), spec.option_names(), strict=True):
            self.options[name] = (spec.name, field.name)
        return old

    def remove_layer(self, name: str) -> LayerEntry:
        """Remove the layer ``name`` (a ``KeyError`` if absent) and its keys."""
        entry = self.layers.pop(name)
        spec = entry.spec
        for table, key in ((self.symbols, spec.symbol), (self.prefixes, spec.option_prefix)):
            if table.get(key) == name:
                del table[key]
        for option in spec.option_names():
            if self.options.get(option, ("",))[0] == name:
                del self.options[option]
        return entry

    # -- named patterns ------------------------------------------------------------------------

    def add_pattern(self, entry: PatternEntry, *, replace: bool = False) -> PatternEntry | None:
        """Add a named pattern; a taken name is a conflict, as for layers (contested when an
        installed plugin made it). Returns the entry it replaced."""
        name = entry.pattern.name
        old = self.patterns.get(name)
        if old is not None and not replace:
            if entry.distribution:
                fix = _disable_fix(entry.plugin)
            else:
                fix = "choose another name, or pass replace=True"
            message = (
                f"named pattern {name!r} from {_source(entry.distribution)} was not registered: "
                f"the name {name!r} is already used by the named pattern of {old.who()}. "
                f"Fix: {fix}."
            )
            if entry.distribution:
                self.contested[Claim("pattern", name)] = message
            raise PluginConflictError(message, plugin=entry.plugin, distribution=entry.distribution)
        self.patterns[name] = entry
        return old

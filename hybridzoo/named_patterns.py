"""Named patterns (``"jamba_like"``, ...): the record plugins declare, expansion and listing.

The core defines no named pattern: every one comes from a plugin's ``hybridzoo_named_patterns``
hook (the builtin ones from ``hybridzoo_plugins.patterns``) or from
:func:`hybridzoo.plugin.register_pattern` at run time. A named pattern knows the layers it uses,
so one whose layers are not registered (not installed, or disabled with
``HYBRIDZOO_DISABLE_PLUGINS``) is listed as unavailable with the missing layers named, and
expanding it is a :class:`~hybridzoo.PatternError` that names them.

    >>> import hybridzoo
    >>> [p.name for p in hybridzoo.list_patterns() if p.available]  # doctest: +SKIP
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import attrs

from hybridzoo.errors import PatternError
from hybridzoo.spec import plugin_failure
from hybridzoo.validate import is_integer

if TYPE_CHECKING:  # pragma: no cover
    from hybridzoo.registry import Registry

__all__ = [
    "NamedPattern",
    "PatternInfo",
    "expand_named_pattern",
    "list_patterns",
    "validate_named_pattern",
]


@attrs.frozen
class NamedPattern:
    """A named pattern: what a ``hybridzoo_named_patterns`` hook returns (API version 2).

    The common form is a cycle: ``layers`` repeated to the length asked for, position 1 first
    (``NamedPattern("conv_mix", ("conv", "conv", "mlp"), "mlp every 3rd layer, else conv")``
    gives ``conv conv mlp conv conv mlp`` for 6 layers). For any other rule give
    ``function(num_layers) -> [layer names]`` and list in ``layers`` every layer it may use.
    Either way the registry knows the layers a pattern needs.

    Attributes:
        name: lower-case identifier.
        layers: layer names: the cycle, or (with ``function``) the layers it may return.
        rule: one line saying what the pattern is (shown by ``hybridzoo patterns``).
        function: ``num_layers -> layer names``; ``None`` for the cycle form.
    """

    name: str
    layers: tuple[str, ...] = attrs.field(converter=tuple)
    rule: str = ""
    function: Callable[[int], Sequence[str]] | None = None

    def uses(self) -> list[str]:
        """The distinct layers of :attr:`layers`, in first-seen order."""
        return list(dict.fromkeys(self.layers))

    def expand(self, num_layers: int) -> list[str]:
        """The layer names for ``num_layers`` positions (no registry lookup, no checks)."""
        if self.function is not None:
            return list(self.function(num_layers))
        return [self.layers[i % len(self.layers)] for i in range(num_layers)]

    def __call__(self, num_layers: int) -> list[str]:
        # API version 1 described a named pattern as a function of num_layers: still one
        return self.expand(num_layers)


def validate_named_pattern(
    pattern: object, *, plugin: str | None = None, distribution: str | None = None
) -> None:
    """Check a :class:`NamedPattern`; raise :class:`~hybridzoo.PluginError` saying what is bad."""
    fail = plugin_failure("named pattern", getattr(pattern, "name", "?"), plugin, distribution)
    if not isinstance(pattern, NamedPattern):
        raise fail(f"expected a hybridzoo.plugin.NamedPattern, got {pattern!r:.80}")
    if not isinstance(pattern.name, str) or not pattern.name.isidentifier():
        raise fail("the name must be an identifier (letters, digits, underscores)")
    bad = [n for n in pattern.layers if not isinstance(n, str) or not n]
    if bad:
        raise fail(f"layers must be layer names (strings), got {bad}")
    if pattern.function is None and not pattern.layers:
        raise fail("give the cycle of layers, or a function and the layers it uses")
    if pattern.function is not None and not callable(pattern.function):
        raise fail(f"function must be callable, got {pattern.function!r}")
    if not isinstance(pattern.rule, str):
        raise fail(f"rule must be a one-line string, got {pattern.rule!r}")


@attrs.frozen
class PatternInfo:
    """One row of :func:`list_patterns`: a named pattern and whether it can be used here."""

    name: str
    rule: str
    layers: tuple[str, ...]  # the distinct layers it uses (empty: not declared)
    missing: tuple[str, ...]  # those not registered (or contested)
    source: str | None  # the distribution that supplied it; None when registered at run time

    @property
    def available(self) -> bool:
        """Every layer it uses is registered."""
        return not self.missing


def _registry(registry: Registry | None) -> Registry:
    from hybridzoo.registry import get_registry

    return registry or get_registry()


def _missing(layers: Sequence[str], registry: Registry) -> list[str]:
    contested = {c.value for c in registry.conflicts() if c.kind == "name"}
    return [n for n in dict.fromkeys(layers) if n not in registry or n in contested]


def _not_registered(name: str, missing: Sequence[str], registry: Registry) -> PatternError:
    what = ", ".join(map(repr, missing))
    hint = " Install the plugin that provides it"
    if registry.disabled:
        hint += f", or enable it (HYBRIDZOO_DISABLE_PLUGINS={','.join(sorted(registry.disabled))})"
    return PatternError(
        f"the named pattern {name!r} needs the layer{'s' * (len(missing) > 1)} {what}, which "
        f"{'is' if len(missing) == 1 else 'are'} not registered.{hint}. "
        f"Registered layers: {', '.join(registry.names()) or '(none)'}"
    )


def expand_named_pattern(
    name: str, num_layers: int, *, registry: Registry | None = None
) -> list[str]:
    """The layer names of the named pattern ``name`` with ``num_layers`` positions.

    Raises :class:`~hybridzoo.PatternError` for an unknown name (with the close matches), a
    ``num_layers`` that is not an integer >= 1, or a pattern whose layers are not registered
    (naming them); :class:`~hybridzoo.PluginConflictError` when two plugins define the name.

    >>> expand_named_pattern("conv_mix", 4)  # doctest: +SKIP
    ['conv', 'conv', 'mlp', 'conv']
    """
    registry = _registry(registry)
    if not isinstance(name, str):
        raise PatternError(
            f"a named pattern is given by its name (a string), got {name!r} "
            f"({type(name).__name__}). Named patterns: {', '.join(registry.named_patterns())}"
        )
    named = registry.named_pattern(name)
    if not is_integer(num_layers) or num_layers < 1:
        raise PatternError(
            f"num_layers must be an integer >= 1, got {num_layers!r}: the number of positions of "
            f"the named pattern {name!r}"
        )
    missing = _missing(named.layers, registry)
    if missing:
        raise _not_registered(name, missing, registry)
    names = named.expand(int(num_layers))
    if not all(isinstance(n, str) for n in names):
        raise PatternError(f"the named pattern {name!r} gave non-names: {names!r:.120}")
    missing = _missing(names, registry)
    if missing:
        raise _not_registered(name, missing, registry)
    return names


def list_patterns(glob: str = "*", *, registry: Registry | None = None) -> list[PatternInfo]:
    """The named patterns matching the shell-style ``glob``, in registration order, each with
    the layers it uses and the ones missing here (``info.available`` is False when any is)."""
    registry = _registry(registry)
    rows = []
    for name, named in registry.named_patterns().items():
        if fnmatch.fnmatchcase(name, glob):
            layers = tuple(named.uses())
            source = registry.pattern_source(name)
            rows.append(
                PatternInfo(name, named.rule, layers, tuple(_missing(layers, registry)), source)
            )
    return rows

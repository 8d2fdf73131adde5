"""The pluggy hooks a hybridzoo plugin may implement (project name ``"hybridzoo"``).

A plugin is a module (or object) named by an entry point in the group ``hybridzoo.layers``; it
marks its hook functions with :data:`hookimpl`::

    from hybridzoo.plugin import hookimpl

    @hookimpl
    def hybridzoo_layer_specs():
        return [SPEC]          # the plugin's LayerSpec(s)

Each hook is called once per plugin, when the registry first loads (lazily, on first use).

How hybridzoo uses pluggy (decided, with why): pluggy holds the hook specifications below,
validates each plugin's implementations against them when the plugin is registered (a misspelt
``hybridzoo_*`` hook or an unknown argument is reported as that plugin's failure) and finds the
implementations of each plugin. The registry calls a plugin's implementations itself, one plugin
at a time, rather than through ``pm.hook.<name>()``, because every result must be attributed to
its plugin and distribution and a plugin that raises must not stop the others; and it reads the
entry points itself rather than with ``load_setuptools_entrypoints``, which stops at the first
plugin that fails to import, keys plugins by entry-point name (a second distribution reusing a
name would be skipped silently) and cannot disable a plugin by distribution name.

Plugin API version 2 (additive over 1): ``hybridzoo_named_patterns`` returns
:class:`~hybridzoo.named_patterns.NamedPattern` records (the version-1 dict of name -> function
still works); a named pattern whose name is taken is a conflict, as a layer name is. The other
additions are fields of :class:`~hybridzoo.spec.LayerSpec` and :class:`~hybridzoo.spec.Capabilities`
(see :mod:`hybridzoo.spec`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:  # pragma: no cover
    from hybridzoo.named_patterns import NamedPattern
    from hybridzoo.spec import LayerSpec

__all__ = ["PROJECT_NAME", "HookSpecs", "hookimpl", "hookspec"]

PROJECT_NAME = "hybridzoo"
#: Marks a plugin's hook implementation.
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)
#: Marks a hook specification (used by hybridzoo itself).
hookspec = pluggy.HookspecMarker(PROJECT_NAME)


class HookSpecs:
    """The hook specifications (API version 2)."""

    @hookspec
    def hybridzoo_layer_specs(self) -> Sequence[LayerSpec]:  # type: ignore[empty-body]
        """Return the layer types this plugin provides, one :class:`~hybridzoo.LayerSpec` each.

        Called once per plugin when the registry loads. Every spec is validated
        (:func:`hybridzoo.spec.validate_spec`); a name, symbol, option prefix or option name
        that another plugin already claims is reported as a conflict, never overwritten.

        Added in API version 1.
        """

    @hookspec
    def hybridzoo_named_patterns(  # type: ignore[empty-body]
        self,
    ) -> Sequence[NamedPattern] | Mapping[str, Callable[[int], list[str]]]:
        """Return named patterns: a list of :class:`~hybridzoo.named_patterns.NamedPattern`
        (each knows its layers and its one-line rule), or the version-1 form, a dict
        ``{name: rule}`` where ``rule(num_layers)`` gives layer names.

        Optional. Named patterns serve :func:`hybridzoo.expand_named_pattern`,
        :func:`hybridzoo.build_pattern` and :func:`hybridzoo.list_patterns` (which lists a
        pattern whose layers are not installed as unavailable); a name that is already taken
        (by a builtin or any plugin) is a conflict.

        Added in API version 1; records in API version 2.
        """

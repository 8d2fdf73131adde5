"""The pluggy hooks a hybridzoo plugin may implement (project name ``"hybridzoo"``).

A plugin is a module (or object) named by an entry point in the group ``hybridzoo.layers``; it
marks its hook functions with :data:`hookimpl`::

    import hybridzoo

    @hybridzoo.hookimpl
    def hybridzoo_layer_specs():
        return [MY_SPEC]

Each hook is called once per plugin, when the registry first loads (lazily, on first use).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:  # pragma: no cover
    from hybridzoo.spec import LayerSpec

__all__ = ["PROJECT_NAME", "HookSpecs", "hookimpl", "hookspec"]

PROJECT_NAME = "hybridzoo"
#: Marks a plugin's hook implementation.
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)
#: Marks a hook specification (used by hybridzoo itself).
hookspec = pluggy.HookspecMarker(PROJECT_NAME)


class HookSpecs:
    """The hook specifications (API version 1)."""

    @hookspec
    def hybridzoo_layer_specs(self) -> Sequence[LayerSpec]:  # type: ignore[empty-body]
        """Return the layer types this plugin provides, one :class:`~hybridzoo.LayerSpec` each.

        Called once per plugin when the registry loads. Every spec is validated
        (:func:`hybridzoo.spec.validate_spec`); a name, symbol or option prefix that another
        plugin already claims is reported as a conflict, never overwritten.

        Added in API version 1.
        """

    @hookspec
    def hybridzoo_named_patterns(  # type: ignore[empty-body]
        self,
    ) -> dict[str, Callable[[int], list[str]]]:
        """Return named patterns: ``{name: rule}`` where ``rule(num_layers)`` gives layer names.

        Optional. Named patterns join the builtin ones (``jamba_like``, ...) for
        :func:`hybridzoo.pattern` and :func:`hybridzoo.build_pattern`; a name that is already
        taken is a conflict.

        Added in API version 1.
        """

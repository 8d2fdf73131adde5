"""Closed formulas of the ``ffn`` layer (no torch): the exact parameter count."""

from __future__ import annotations

from typing import TYPE_CHECKING

from hybridzoo.plugin import feedforward_param_count

if TYPE_CHECKING:  # pragma: no cover
    from hybridzoo_plugins.ffn import FFNOptions


def param_count(o: FFNOptions, hidden_size: int) -> int:
    """``up`` ``H → I`` (``H → 2·I`` for SwiGLU) and ``down`` ``I → H``, biases if ``o.bias``:
    ``2·I·H`` weights (``3·I·H`` for SwiGLU), with ``I = o.inner_size or o.expand_factor·H``."""
    return feedforward_param_count(
        hidden_size,
        o.expand_factor,
        activation=o.activation,
        bias=o.bias,
        inner_size=o.inner_size,
    )

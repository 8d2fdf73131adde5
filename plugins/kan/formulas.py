"""Closed formula for the KAN layer, from its options record (no torch)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from hybridzoo.plugin import LayerFlops

if TYPE_CHECKING:  # pragma: no cover
    from hybridzoo_plugins.kan import KANOptions

__all__ = ["flops", "param_count"]


def param_count(o: KANOptions, hidden_size: int) -> int:
    """Parameters of one :class:`~hybridzoo_plugins.kan.layer.KANLayer` ``H → H`` (no biases):
    the base weight ``[H, H]``, the spline coefficients ``[H, H, grid_size + spline_order]`` and,
    with ``spline_scaler``, a scale per (output, input) ``[H, H]``. The grid ends do not count."""
    per_edge = 1 + (o.grid_size + o.spline_order) + (1 if o.spline_scaler else 0)
    return hidden_size * hidden_size * per_edge


def flops(o: KANOptions, hidden_size: int, seq_len: int) -> LayerFlops:
    """Forward FLOPs on ``seq_len`` positions: the base and spline products ``2·H²·(1 + G + k)``
    per position (the B-spline basis evaluation and the activation are not counted)."""
    return LayerFlops(2 * hidden_size * hidden_size * (1 + o.grid_size + o.spline_order) * seq_len)

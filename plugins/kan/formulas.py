"""Closed formula for the KAN layer, from its options record (no torch)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from hybridzoo_plugins.kan import KANOptions

__all__ = ["param_count"]


def param_count(o: KANOptions, hidden_size: int) -> int:
    """Parameters of one :class:`~hybridzoo_plugins.kan.layer.KANLayer` ``H → H`` (no biases):
    the base weight ``[H, H]``, the spline coefficients ``[H, H, grid_size + spline_order]`` and,
    with ``spline_scaler``, a scale per (output, input) ``[H, H]``. The grid ends do not count."""
    per_edge = 1 + (o.grid_size + o.spline_order) + (1 if o.spline_scaler else 0)
    return hidden_size * hidden_size * per_edge

"""Closed formulas for the KAN layer: parameter count and state size (no torch)."""

from __future__ import annotations


def param_count(
    hidden_size: int,
    *,
    grid_size: int = 5,
    spline_order: int = 3,
    grid_range: tuple[float, float] = (-2.0, 2.0),
    spline_scaler: bool = True,
) -> int:
    """Exact parameter count of one :class:`KANLayer` ``H → H``.

    - base weight ``[H, H]``: ``H²``;
    - spline coefficients ``[H, H, grid_size + spline_order]``: ``H²·(grid_size + spline_order)``;
    - per-(output, input) spline scaler ``[H, H]`` (if on): ``H²``.

    No biases. ``grid_range`` does not change the count.
    """
    del grid_range
    per_edge = 1 + (grid_size + spline_order) + (1 if spline_scaler else 0)
    return hidden_size * hidden_size * per_edge


def state_size(hidden_size: int, **_options: object) -> int:
    """The KAN layer acts on each position alone: no decoding state (0 values)."""
    del hidden_size
    return 0

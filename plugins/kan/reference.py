"""The obvious KAN evaluation: scalar, recursive Cox–de Boor for each basis function.

Plain Python floats, one point and one basis function at a time, read straight off the definition;
tests compare the vectorised layer with it.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from hybridzoo_plugins.kan.layer import KANLayer


def knot_list(grid_size: int, spline_order: int, grid_range: tuple[float, float]) -> list[float]:
    """Knots ``t_j = lo + (j - k)·h``, ``j = 0 .. G + 2k``, ``h = (hi - lo) / G``."""
    lo, hi = grid_range
    h = (hi - lo) / grid_size
    return [(j - spline_order) * h + lo for j in range(grid_size + 2 * spline_order + 1)]


def cox_de_boor(x: float, j: int, p: int, knots: list[float]) -> float:
    """``B_{j,p}(x)``: the ``j``-th B-spline of degree ``p`` on ``knots`` (half-open at p = 0)."""
    if p == 0:
        return 1.0 if knots[j] <= x < knots[j + 1] else 0.0
    left = (x - knots[j]) / (knots[j + p] - knots[j]) * cox_de_boor(x, j, p - 1, knots)
    right = (
        (knots[j + p + 1] - x)
        / (knots[j + p + 1] - knots[j + 1])
        * cox_de_boor(x, j + 1, p - 1, knots)
    )
    return left + right


def reference_basis(
    x: Tensor, *, grid_size: int, spline_order: int, grid_range: tuple[float, float]
) -> Tensor:
    """``[...] -> [..., G + k]``, each entry by :func:`cox_de_boor` (float64)."""
    knots = knot_list(grid_size, spline_order, grid_range)
    flat = x.detach().reshape(-1).tolist()
    rows = [
        [cox_de_boor(v, j, spline_order, knots) for j in range(grid_size + spline_order)]
        for v in flat
    ]
    return torch.tensor(rows, dtype=torch.float64).reshape(*x.shape, grid_size + spline_order)


def reference_forward(layer: KANLayer, x: Tensor) -> Tensor:
    """``layer``'s output for ``x [..., H]``, summing edge by edge (float64)."""
    hidden = layer.hidden_size
    num_basis = layer.grid_size + layer.spline_order
    knots = knot_list(layer.grid_size, layer.spline_order, layer.grid_range)
    base_w = layer.base_weight.detach().double().tolist()
    coef = layer.spline_weight.detach().double().tolist()
    scale = (
        layer.spline_scaler.detach().double().tolist()
        if layer.spline_scaler is not None
        else [[1.0] * hidden for _ in range(hidden)]
    )
    points = x.detach().double().reshape(-1, hidden).tolist()
    out = []
    for point in points:
        basis = [
            [cox_de_boor(v, g, layer.spline_order, knots) for g in range(num_basis)] for v in point
        ]
        row = []
        for o in range(hidden):
            total = 0.0
            for i, v in enumerate(point):
                silu = v / (1.0 + math.exp(-v))
                spline = sum(coef[o][i][g] * basis[i][g] for g in range(num_basis))
                total += base_w[o][i] * silu + scale[o][i] * spline
            row.append(total)
        out.append(row)
    return torch.tensor(out, dtype=torch.float64).reshape(x.shape)

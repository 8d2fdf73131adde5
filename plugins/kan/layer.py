"""A Kolmogorov–Arnold Network layer (Liu et al. 2024), "efficient KAN" formulation, per position.

For ``x [..., H]`` the layer computes, for every output ``o``,

    y_o = Σ_i W_base[o, i] · silu(x_i) + Σ_i s[o, i] · Σ_g c[o, i, g] · B_g(x_i)

where ``B_g`` (``g = 0 .. grid_size + spline_order - 1``) are the B-splines of degree
``spline_order`` on a uniform grid: ``grid_size`` intervals of width ``h = (hi - lo) / grid_size``
over ``grid_range = (lo, hi)``, the knot vector extended by ``spline_order`` knots on each side
(knots ``t_j = lo + (j - spline_order)·h``, ``j = 0 .. grid_size + 2·spline_order``), and ``s`` an
optional learned per-(output, input) scale of the spline path (``spline_scaler``, initialised to 1).

Behaviour in and out of the grid (cubic, the default):
- on ``[lo, hi]`` the basis is a partition of unity (Σ_g B_g = 1; ``[lo, hi)`` for degree 0);
- on ``(lo - spline_order·h, lo)`` and ``(hi, hi + spline_order·h)`` (the extension) the basis
  tapers smoothly (C^{spline_order-1}) to zero;
- outside ``(lo - spline_order·h, hi + spline_order·h)`` every basis function is zero: the spline
  path contributes nothing and only the SiLU base path remains.

The layer's inputs are pre-normalised by the core's LayerNorm, so ``(-2, 2)`` with the extension
``(-4.4, 4.4)`` covers them. The layer acts on each position alone and has no step methods of its
own: the plugin declares ``Capabilities(positionwise=True)`` and the core runs its step mode
(:func:`hybridzoo.nn.positionwise.positionwise_step`).

Fast path: the basis is evaluated by the Cox–de Boor recursion vectorised over the knots (``[..., H,
grid_size + spline_order]``), then the spline path is one matmul ``[..., H·(G+k)] × [H·(G+k), H]``.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from hybridzoo.validate import at_least, boolean, is_real

if TYPE_CHECKING:  # pragma: no cover
    from hybridzoo_plugins.kan import KANOptions

__all__ = ["KANLayer", "b_spline_basis", "grid_knots", "make_bodies"]


def grid_knots(
    grid_size: int,
    spline_order: int,
    grid_range: tuple[float, float],
    *,
    dtype: torch.dtype = torch.float64,
    device: torch.device | str | None = None,
) -> Tensor:
    """The extended uniform knot vector ``[grid_size + 2·spline_order + 1]``.

    ``t_j = lo + (j - spline_order)·h`` with ``h = (hi - lo) / grid_size``.
    """
    lo, hi = grid_range
    h = (hi - lo) / grid_size
    steps = torch.arange(-spline_order, grid_size + spline_order + 1, dtype=dtype, device=device)
    return steps * h + lo


def b_spline_basis(
    x: Tensor,
    *,
    grid_size: int = 5,
    spline_order: int = 3,
    grid_range: tuple[float, float] = (-2.0, 2.0),
) -> Tensor:
    """All B-spline basis functions at ``x [...]``: ``[..., grid_size + spline_order]``.

    Cox–de Boor, vectorised over the basis index: degree 0 is the indicator of the half-open
    interval ``[t_j, t_{j+1})``; degree ``p`` mixes neighbours ``j`` and ``j+1`` of degree ``p-1``.
    """
    knots = grid_knots(grid_size, spline_order, grid_range, dtype=x.dtype, device=x.device)
    x = x.unsqueeze(-1)  # [..., 1]
    basis = ((x >= knots[:-1]) & (x < knots[1:])).to(x.dtype)  # [..., G + 2k]
    for p in range(1, spline_order + 1):
        # basis: [..., G + 2k - p + 1] (degree p - 1) -> [..., G + 2k - p] (degree p)
        left = (x - knots[: -(p + 1)]) / (knots[p:-1] - knots[: -(p + 1)])
        right = (knots[p + 1 :] - x) / (knots[p + 1 :] - knots[1:-p])
        basis = left * basis[..., :-1] + right * basis[..., 1:]
    return basis  # [..., G + k]


class KANLayer(nn.Module):
    """KAN layer ``H → H`` applied at each position (a body: no outer norm or residual).

    Args:
        hidden_size: width ``H`` (inputs and outputs).
        grid_size: number of grid intervals ``G`` over ``grid_range``.
        spline_order: B-spline degree ``k`` (3 = cubic splines, C² everywhere; in general
            C^{k-1}); ``G + k`` basis functions per input. ``0`` gives piecewise-constant splines
            (indicators of ``[t_j, t_{j+1})``): discontinuous, no gradient to ``x`` through them.
        grid_range: ``(lo, hi)`` of the grid; see the module docstring for the behaviour outside.
        spline_scaler: learn a scale ``s[o, i]`` of each edge's spline (initialised to 1).

    Parameters: ``base_weight [H, H]`` (SiLU path, ``nn.Linear``'s default initialisation),
    ``spline_weight [H, H, G + k]`` (initialised ``N(0, (0.1/√H)²)``, so the spline path starts
    small), ``spline_scaler [H, H]``. Count: :func:`hybridzoo_plugins.kan.formulas.param_count`.
    """

    def __init__(
        self,
        hidden_size: int,
        *,
        grid_size: int = 5,
        spline_order: int = 3,
        grid_range: tuple[float, float] = (-2.0, 2.0),
        spline_scaler: bool = True,
    ) -> None:
        super().__init__()
        self.hidden_size = at_least(1).check("hidden_size", hidden_size)
        self.grid_size = at_least(1).check("grid_size", grid_size)
        self.spline_order = at_least(0).check("spline_order", spline_order)
        if not (isinstance(grid_range, tuple | list) and len(grid_range) == 2) or not all(
            map(is_real, grid_range)
        ):
            raise TypeError(f"grid_range must be a pair of numbers (lo, hi), got {grid_range!r}")
        lo, hi = (float(v) for v in grid_range)
        if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
            raise ValueError(f"grid_range must be finite with lo < hi, got {grid_range!r}")
        self.grid_range = (lo, hi)
        boolean.check("spline_scaler", spline_scaler)
        num_basis = grid_size + spline_order
        self.base_weight = nn.Parameter(torch.empty(hidden_size, hidden_size))
        self.spline_weight = nn.Parameter(torch.empty(hidden_size, hidden_size, num_basis))
        if spline_scaler:
            self.spline_scaler: nn.Parameter | None = nn.Parameter(
                torch.ones(hidden_size, hidden_size)
            )
        else:
            self.register_parameter("spline_scaler", None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Base path as ``nn.Linear``; spline coefficients small noise; scaler ones."""
        nn.init.kaiming_uniform_(self.base_weight, a=math.sqrt(5))
        nn.init.normal_(self.spline_weight, 0.0, 0.1 / math.sqrt(self.hidden_size))
        if self.spline_scaler is not None:
            nn.init.ones_(self.spline_scaler)

    def basis(self, x: Tensor) -> Tensor:
        """The basis of every input channel: ``x [..., H] -> [..., H, G + k]``."""
        return b_spline_basis(
            x, grid_size=self.grid_size, spline_order=self.spline_order, grid_range=self.grid_range
        )

    def spline_coefficients(self) -> Tensor:
        """Effective coefficients ``s[o, i] · c[o, i, g]``: ``[H, H, G + k]``."""
        if self.spline_scaler is None:
            return self.spline_weight
        return self.spline_weight * self.spline_scaler.unsqueeze(-1)

    def forward(self, x: Tensor) -> Tensor:
        """``x [..., H] -> [..., H]`` (any leading dims, e.g. ``[B, L, H]``)."""
        base = F.linear(F.silu(x), self.base_weight)
        basis = self.basis(x).flatten(-2)  # [..., H·(G + k)]
        weight = self.spline_coefficients().flatten(1)  # [H, H·(G + k)]
        return base + F.linear(basis, weight)


def make_bodies(o: KANOptions, hidden_size: int) -> KANLayer:
    """The kan layer's body: one :class:`KANLayer`."""
    return KANLayer(
        hidden_size,
        grid_size=o.grid_size,
        spline_order=o.spline_order,
        grid_range=(o.grid_low, o.grid_high),
        spline_scaler=o.spline_scaler,
    )

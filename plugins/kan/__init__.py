"""The ``kan`` layer (symbol ``K``): a Kolmogorov–Arnold layer ``H → H`` at each position, with a
SiLU base path and a cubic B-spline path over ``kan_grid_size`` intervals (Liu et al. 2024).

It acts on each position alone: ``Capabilities(positionwise=True)``, so the core runs its step
mode and counts no state."""

from __future__ import annotations

import math

import attrs

from hybridzoo.plugin import (
    Capabilities,
    at_least,
    boolean,
    in_range,
    layer_spec,
    option,
    specs_hook,
)
from hybridzoo_plugins.kan import formulas

_FINITE = in_range(-math.inf, math.inf, low_open=True, high_open=True)


@attrs.frozen
class KANOptions:
    """Options of the ``kan`` layer (user prefix ``kan_``)."""

    grid_size: int = option(
        5,
        doc="Number of grid intervals G of each spline (Edifice: 5).",
        validator=at_least(1),
        examples=(1, 3),
    )
    spline_order: int = option(
        3,
        doc="B-spline degree (3 = cubic, C² continuous).",
        validator=at_least(0),
        examples=(1, 2),
    )
    grid_low: float = option(
        -2.0, doc="Left end of the grid (inputs are LayerNorm-ed).", validator=_FINITE
    )
    grid_high: float = option(2.0, doc="Right end of the grid.", validator=_FINITE, examples=(1.0,))
    spline_scaler: bool = option(
        True, doc="Learn a scale per (output, input) spline.", validator=boolean, examples=(False,)
    )

    def __attrs_post_init__(self) -> None:
        if not self.grid_low < self.grid_high:
            raise ValueError(
                f"kan_grid_low must be < kan_grid_high, got {self.grid_low} and {self.grid_high}"
            )


SPEC = layer_spec(
    __name__,
    name="kan",
    symbol="K",
    options=KANOptions,
    formulas=formulas,
    description="KAN layer per position: SiLU base path + cubic B-spline path.",
    capabilities=Capabilities(causal=True, positionwise=True, complexity="linear"),
)

hybridzoo_layer_specs = specs_hook(SPEC)

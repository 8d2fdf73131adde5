"""The ``kan`` layer (symbol ``K``): a Kolmogorov–Arnold layer ``H → H`` at each position, with a
SiLU base path and a cubic B-spline path over ``kan_grid_size`` intervals (Liu et al. 2024)."""

from __future__ import annotations

import math
from typing import Any

import attrs

from hybridzoo import Capabilities, LayerSpec, hookimpl, option
from hybridzoo.spec import boolean, float_in, int_at_least
from hybridzoo_plugins.kan import formulas

_REAL = float_in(-math.inf, math.inf, low_open=True, high_open=True)


@attrs.frozen
class KANOptions:
    """Options of the ``kan`` layer (user prefix ``kan_``)."""

    grid_size: int = option(
        5,
        doc="Number of grid intervals G of each spline (Edifice: 5).",
        validator=int_at_least(1),
        examples=(1, 3),
    )
    spline_order: int = option(
        3,
        doc="B-spline degree (3 = cubic, C² continuous).",
        validator=int_at_least(0),
        examples=(1, 2),
    )
    grid_low: float = option(
        -2.0, doc="Left end of the grid (inputs are LayerNorm-ed).", validator=_REAL
    )
    grid_high: float = option(2.0, doc="Right end of the grid.", validator=_REAL, examples=(1.0,))
    spline_scaler: bool = option(
        True, doc="Learn a scale per (output, input) spline.", validator=boolean, examples=(False,)
    )

    def __attrs_post_init__(self) -> None:
        if not self.grid_low < self.grid_high:
            raise ValueError(
                f"kan_grid_low must be < kan_grid_high, got {self.grid_low} and {self.grid_high}"
            )

    def layer_kwargs(self) -> dict[str, Any]:
        return {
            "grid_size": self.grid_size,
            "spline_order": self.spline_order,
            "grid_range": (self.grid_low, self.grid_high),
            "spline_scaler": self.spline_scaler,
        }


def _factory(options: KANOptions, hidden_size: int) -> Any:
    from hybridzoo_plugins.kan.layer import KANLayer

    return KANLayer(hidden_size, **options.layer_kwargs())


def _reference(body: Any, x: Any) -> Any:
    from hybridzoo_plugins.kan.reference import reference_forward

    return reference_forward(body, x)


SPEC = LayerSpec(
    name="kan",
    symbol="K",
    option_prefix="kan",
    options=KANOptions,
    factory=_factory,
    param_count=lambda o, h: formulas.param_count(h, **o.layer_kwargs()),
    description="KAN layer per position: SiLU base path + cubic B-spline path.",
    capabilities=Capabilities(causal=True, stateful=True, complexity="linear"),
    state_size=lambda o, h: 0,
    reference=_reference,
)


@hookimpl
def hybridzoo_layer_specs() -> list[LayerSpec]:
    return [SPEC]

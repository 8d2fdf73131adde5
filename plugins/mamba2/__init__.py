"""The ``mamba2`` layer (symbol ``S``, for state-space duality): the Mamba-2 mixer (Dao & Gu,
"Transformers are SSMs", ICML 2024), with the parameter names and shapes of transformers'
``Mamba2Mixer`` so that state dicts load (:mod:`hybridzoo_plugins.mamba2.convert`)."""

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
    positive,
    power_of_two,
    specs_hook,
)
from hybridzoo_plugins.mamba2 import formulas

__all__ = ["SPEC", "Mamba2Options"]


@attrs.frozen
class Mamba2Options:
    """Options of the ``mamba2`` layer (user prefix ``mamba2_``)."""

    state_size: int = option(
        64, doc="SSM state size N per head.", validator=at_least(1), examples=(1, 4)
    )
    head_dim: int = option(
        64,
        doc="Channels per head P; heads = expand_factor · hidden_size / head_dim.",
        validator=at_least(1),
        examples=(2, 4),
    )
    expand_factor: float = option(
        2,
        doc="Inner width I = expand_factor · hidden_size (a whole number; may be fractional, "
        "as Nemotron-H's 128 heads of 80 on 4480 channels).",
        validator=positive,
        examples=(1,),
    )
    num_groups: int = option(
        1,
        doc="Groups G of heads sharing B and C (a divisor of the number of heads); the gated "
        "norm is taken per group.",
        validator=at_least(1),
        examples=(2,),
    )
    conv_size: int = option(
        4,
        doc="Kernel of the depthwise causal convolution over x, B and C.",
        validator=at_least(1),
        examples=(1, 2, 3),
    )
    dt_min: float = option(
        0.001,
        doc="Smallest initial time step (log-uniform in [dt_min, dt_max]).",
        validator=positive,
    )
    dt_max: float = option(0.1, doc="Largest initial time step.", validator=positive)
    dt_init_floor: float = option(
        1e-4, doc="Lower clamp of the initial time steps.", validator=positive
    )
    dt_limit_min: float = option(
        0.0,
        doc="Time steps are clamped to at least this (Nemotron-H: its dt_min; 0 = no clamp).",
        validator=in_range(0.0, math.inf, high_open=True),
        examples=(0.05,),
    )
    dt_limit_max: float | None = option(
        None,
        doc="Time steps are clamped to at most this (None = no clamp).",
        validator=in_range(0.0, math.inf, low_open=True, high_open=True, allow_none=True),
        examples=(1.0,),
    )
    conv_bias: bool = option(
        True, doc="Bias in the convolution.", validator=boolean, examples=(False,)
    )
    bias: bool = option(
        False, doc="Biases in in_proj and out_proj.", validator=boolean, examples=(True,)
    )
    norm_eps: float = option(1e-5, doc="Epsilon of the gated RMSNorm.", validator=positive)
    chunk_size: int = option(
        64,
        doc="Chunk length of the SSD kernel, a power of two (speed only; same results).",
        validator=power_of_two,
        examples=(4,),
    )

    def __attrs_post_init__(self) -> None:
        if not self.dt_min <= self.dt_max:
            raise ValueError(
                f"mamba2_dt_min must be <= mamba2_dt_max, got {self.dt_min} and {self.dt_max}"
            )
        if self.dt_limit_max is not None and not self.dt_limit_min < self.dt_limit_max:
            raise ValueError(
                "mamba2_dt_limit_min must be < mamba2_dt_limit_max, got "
                f"{self.dt_limit_min} and {self.dt_limit_max}"
            )


SPEC = layer_spec(
    __name__,
    name="mamba2",
    symbol="S",
    options=Mamba2Options,
    formulas=formulas,
    description="Mamba-2 (SSD) mixer: scalar decay per head, B and C shared in groups, "
    "gated RMSNorm.",
    capabilities=Capabilities(causal=True, stateful=True, complexity="linear", packing=True),
)

hybridzoo_layer_specs = specs_hook(SPEC)

"""The ``mamba2`` layer (symbol ``S``, for state-space duality): the Mamba-2 mixer (Dao & Gu,
"Transformers are SSMs", ICML 2024), with the parameter names and shapes of transformers'
``Mamba2Mixer`` so that state dicts load (:mod:`hybridzoo_plugins.mamba2.convert`)."""

from __future__ import annotations

import math

import attrs

from hybridzoo.plugin import (
    Capabilities,
    chunk_size_option,
    conv_size_option,
    count_option,
    flag_option,
    in_range,
    layer_spec,
    norm_eps_option,
    option,
    positive_option,
    specs_hook,
)
from hybridzoo_plugins.mamba2 import formulas

__all__ = ["SPEC", "Mamba2Options"]


@attrs.frozen
class Mamba2Options:
    """Options of the ``mamba2`` layer (user prefix ``mamba2_``)."""

    state_size: int = count_option(64, doc="SSM state size N per head.", examples=(1, 4))
    head_dim: int = count_option(
        64,
        doc="Channels per head P; heads = expand_factor · hidden_size / head_dim.",
        examples=(2, 4),
    )
    expand_factor: float = positive_option(
        2,
        doc="Inner width I = expand_factor · hidden_size (a whole number; may be fractional, "
        "as Nemotron-H's 128 heads of 80 on 4480 channels).",
        examples=(1,),
    )
    num_groups: int = count_option(
        1,
        doc="Groups G of heads sharing B and C (a divisor of the number of heads); the gated "
        "norm is taken per group.",
        examples=(2,),
    )
    conv_size: int = conv_size_option("Kernel of the depthwise causal convolution over x, B and C.")
    dt_min: float = positive_option(
        0.001, doc="Smallest initial time step (log-uniform in [dt_min, dt_max])."
    )
    dt_max: float = positive_option(0.1, doc="Largest initial time step.")
    dt_init_floor: float = positive_option(1e-4, doc="Lower clamp of the initial time steps.")
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
    conv_bias: bool = flag_option(True, doc="Bias in the convolution.")
    bias: bool = flag_option(False, doc="Biases in in_proj and out_proj.")
    norm_eps: float = norm_eps_option("gated RMSNorm")
    chunk_size: int = chunk_size_option("SSD")

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

"""The ``mamba`` layer (symbol ``M``): the Mamba-1 selective-SSM mixer (Gu & Dao, 2023), with
parameter names and shapes of the reference mixer so that checkpoints convert."""

from __future__ import annotations

import attrs

from hybridzoo.plugin import (
    Capabilities,
    at_least,
    boolean,
    layer_spec,
    one_of,
    option,
    positive,
    specs_hook,
)
from hybridzoo_plugins.mamba import formulas


@attrs.frozen
class MambaOptions:
    """Options of the ``mamba`` layer (user prefix ``mamba_``)."""

    state_size: int = option(
        16, doc="SSM state size N per channel.", validator=at_least(1), examples=(1, 4)
    )
    expand_factor: int = option(
        2,
        doc="Inner width I = expand_factor · hidden_size.",
        validator=at_least(1),
        examples=(1,),
    )
    conv_size: int = option(
        4,
        doc="Kernel of the depthwise causal convolution (Edifice: 4).",
        validator=at_least(1),
        examples=(1, 2, 3),
    )
    dt_rank: int | str = option(
        "auto",
        doc="Rank of the time-step projection; 'auto' = ceil(hidden_size / 16).",
        validator=one_of("auto") | at_least(1),
        examples=(1, 3),
    )
    dt_min: float = option(0.001, doc="Smallest initial time step.", validator=positive)
    dt_max: float = option(0.1, doc="Largest initial time step.", validator=positive)
    dt_init_floor: float = option(
        1e-4, doc="Lower clamp of the initial time steps.", validator=positive
    )
    conv_bias: bool = option(
        True, doc="Bias in the convolution.", validator=boolean, examples=(False,)
    )
    bias: bool = option(
        False, doc="Biases in in_proj and out_proj.", validator=boolean, examples=(True,)
    )

    def __attrs_post_init__(self) -> None:
        if not self.dt_min <= self.dt_max:
            raise ValueError(
                f"mamba_dt_min must be <= mamba_dt_max, got {self.dt_min} and {self.dt_max}"
            )


SPEC = layer_spec(
    __name__,
    name="mamba",
    symbol="M",
    options=MambaOptions,
    formulas=formulas,
    reference=f"{__name__}.reference:mixer_reference",
    description="Mamba-1 selective SSM mixer: conv1d, input-dependent (dt, B, C), A = -exp(A_log).",
    capabilities=Capabilities(causal=True, stateful=True, complexity="linear", packing=True),
)

hybridzoo_layer_specs = specs_hook(SPEC)

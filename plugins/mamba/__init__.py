"""The ``mamba`` layer (symbol ``M``): the Mamba-1 selective-SSM mixer (Gu & Dao, 2023), with
parameter names and shapes of the reference mixer so that checkpoints convert."""

from __future__ import annotations

import math
from typing import Any

import attrs

from hybridzoo import Capabilities, LayerSpec, hookimpl, option
from hybridzoo.spec import boolean, float_in, int_at_least
from hybridzoo_plugins.mamba import formulas


def _dt_rank(_inst: Any, attribute: attrs.Attribute, value: Any) -> None:
    if value == "auto":
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(
            f"must be 'auto' (= ceil(hidden_size / 16)) or an integer >= 1, got {value!r}"
        )


_POSITIVE = float_in(0.0, math.inf, low_open=True, high_open=True)


@attrs.frozen
class MambaOptions:
    """Options of the ``mamba`` layer (user prefix ``mamba_``)."""

    state_size: int = option(
        16, doc="SSM state size N per channel.", validator=int_at_least(1), examples=(1, 4)
    )
    expand_factor: int = option(
        2,
        doc="Inner width I = expand_factor · hidden_size.",
        validator=int_at_least(1),
        examples=(1,),
    )
    conv_size: int = option(
        4,
        doc="Kernel of the depthwise causal convolution (Edifice: 4).",
        validator=int_at_least(1),
        examples=(1, 2, 3),
    )
    dt_rank: int | str = option(
        "auto",
        doc="Rank of the time-step projection; 'auto' = ceil(hidden_size / 16).",
        validator=_dt_rank,
        examples=(1, 3),
    )
    dt_min: float = option(0.001, doc="Smallest initial time step.", validator=_POSITIVE)
    dt_max: float = option(0.1, doc="Largest initial time step.", validator=_POSITIVE)
    dt_init_floor: float = option(
        1e-4, doc="Lower clamp of the initial time steps.", validator=_POSITIVE
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


def _factory(options: MambaOptions, hidden_size: int) -> Any:
    from hybridzoo_plugins.mamba.layer import MambaMixer

    return MambaMixer(hidden_size, **attrs.asdict(options))


def _param_count(options: MambaOptions, hidden_size: int) -> int:
    o = options
    return formulas.param_count(
        hidden_size,
        state_size=o.state_size,
        expand_factor=o.expand_factor,
        conv_size=o.conv_size,
        dt_rank=o.dt_rank,
        conv_bias=o.conv_bias,
        bias=o.bias,
    )


def _state_size(options: MambaOptions, hidden_size: int) -> int:
    o = options
    return formulas.state_size(
        hidden_size, state_size=o.state_size, expand_factor=o.expand_factor, conv_size=o.conv_size
    )


def _reference(body: Any, x: Any) -> Any:
    from hybridzoo_plugins.mamba.reference import mixer_reference

    return mixer_reference(body, x)


SPEC = LayerSpec(
    name="mamba",
    symbol="M",
    option_prefix="mamba",
    options=MambaOptions,
    factory=_factory,
    param_count=_param_count,
    description="Mamba-1 selective SSM mixer: conv1d, input-dependent (dt, B, C), A = -exp(A_log).",
    capabilities=Capabilities(causal=True, stateful=True, complexity="linear"),
    state_size=_state_size,
    reference=_reference,
)


@hookimpl
def hybridzoo_layer_specs() -> list[LayerSpec]:
    return [SPEC]

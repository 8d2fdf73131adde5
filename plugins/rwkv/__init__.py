"""The ``rwkv`` layer (symbol ``R``): RWKV-6 "Finch" time-mixing then channel-mixing, each its
own pre-norm residual sub-block (Peng et al., 2024)."""

from __future__ import annotations

from typing import Any

import attrs

from hybridzoo import Capabilities, LayerSpec, hookimpl, option
from hybridzoo.spec import float_in, int_at_least, power_of_two
from hybridzoo_plugins.rwkv import formulas


@attrs.frozen
class RWKVOptions:
    """Options of the ``rwkv`` layer (user prefix ``rwkv_``)."""

    head_size: int = option(
        64,
        doc="Size of one WKV head; hidden_size must be a multiple of it.",
        validator=int_at_least(1),
        examples=(4, 8),
    )
    mix_rank: int = option(
        32, doc="Rank of the token-shift (ddlerp) LoRA.", validator=int_at_least(1), examples=(4,)
    )
    decay_rank: int = option(
        64, doc="Rank of the data-dependent decay LoRA.", validator=int_at_least(1), examples=(4,)
    )
    head_size_divisor: int = option(
        8,
        doc="GroupNorm epsilon is 1e-5 · head_size_divisor² (as RWKV-LM).",
        validator=int_at_least(1),
    )
    init_depth: float = option(
        0.5,
        doc="Relative depth in [0, 1] used by RWKV's depth-dependent initialisation.",
        validator=float_in(0.0, 1.0),
        examples=(0.0, 1.0),
    )
    chunk_size: int = option(
        64,
        doc="Chunk length of the WKV kernel, a power of two (speed only; same results).",
        validator=power_of_two,
        examples=(4,),
    )
    expand: float = option(
        3.5,
        doc="Channel-mix hidden size ≈ expand · hidden_size (rounded down to multiple_of).",
        validator=float_in(0.0, 64.0, low_open=True),
        examples=(1.0,),
    )
    multiple_of: int = option(
        32,
        doc="Channel-mix hidden size is a multiple of this.",
        validator=int_at_least(1),
        examples=(8,),
    )


def _factory(options: RWKVOptions, hidden_size: int) -> Any:
    from hybridzoo_plugins.rwkv.layer import make_rwkv_bodies

    return make_rwkv_bodies(hidden_size, **attrs.asdict(options))


def _param_count(options: RWKVOptions, hidden_size: int) -> int:
    return formulas.param_count(hidden_size, **attrs.asdict(options))


def _state_size(options: RWKVOptions, hidden_size: int) -> int:
    return formulas.state_size(hidden_size, **attrs.asdict(options))


def _scale_options(
    options: RWKVOptions, hidden_size: int, *, seq_len: int | None = None
) -> RWKVOptions:
    """WKV heads of ``min(64, hidden_size // 4)`` channels (four heads or more)."""
    return attrs.evolve(options, head_size=min(64, max(1, hidden_size // 4)))


def _reference(body: Any, x: Any) -> Any:
    from hybridzoo_plugins.rwkv.reference import time_mix_reference

    return time_mix_reference(body, x)


SPEC = LayerSpec(
    name="rwkv",
    symbol="R",
    option_prefix="rwkv",
    options=RWKVOptions,
    factory=_factory,
    param_count=_param_count,
    description="RWKV-6 Finch: data-dependent token shift and decay, bonus u, WKV state; "
    "then channel-mixing.",
    capabilities=Capabilities(causal=True, stateful=True, complexity="linear"),
    state_size=_state_size,
    hidden_size_multiple=lambda options: options.head_size,
    sub_blocks=2,
    reference=_reference,
    scale_options=_scale_options,
)


@hookimpl
def hybridzoo_layer_specs() -> list[LayerSpec]:
    return [SPEC]

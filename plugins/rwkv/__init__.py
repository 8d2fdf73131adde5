"""The ``rwkv`` layer (symbol ``R``): RWKV-6 "Finch" time-mixing then channel-mixing, each its
own pre-norm residual sub-block (Peng et al., 2024)."""

from __future__ import annotations

import attrs

from hybridzoo.plugin import (
    Capabilities,
    at_least,
    in_range,
    layer_spec,
    option,
    power_of_two,
    specs_hook,
)
from hybridzoo_plugins.rwkv import formulas


@attrs.frozen
class RWKVOptions:
    """Options of the ``rwkv`` layer (user prefix ``rwkv_``)."""

    head_size: int = option(
        64,
        doc="Size of one WKV head; hidden_size must be a multiple of it.",
        validator=at_least(1),
        examples=(4, 8),
    )
    mix_rank: int = option(
        32, doc="Rank of the token-shift (ddlerp) LoRA.", validator=at_least(1), examples=(4,)
    )
    decay_rank: int = option(
        64, doc="Rank of the data-dependent decay LoRA.", validator=at_least(1), examples=(4,)
    )
    head_size_divisor: int = option(
        8,
        doc="GroupNorm epsilon is 1e-5 · head_size_divisor² (as RWKV-LM).",
        validator=at_least(1),
    )
    init_depth: float = option(
        0.5,
        doc="Relative depth in [0, 1] used by RWKV's depth-dependent initialisation.",
        validator=in_range(0.0, 1.0),
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
        validator=in_range(0.0, 64.0, low_open=True),
        examples=(1.0,),
    )
    multiple_of: int = option(
        32,
        doc="Channel-mix hidden size is a multiple of this.",
        validator=at_least(1),
        examples=(8,),
    )


SPEC = layer_spec(
    __name__,
    name="rwkv",
    symbol="R",
    options=RWKVOptions,
    formulas=formulas,
    sub_blocks=2,
    reference=f"{__name__}.reference:time_mix_reference",
    description="RWKV-6 Finch: data-dependent token shift and decay, bonus u, WKV state; "
    "then channel-mixing.",
    capabilities=Capabilities(causal=True, stateful=True, complexity="linear", packing=True),
)

hybridzoo_layer_specs = specs_hook(SPEC)

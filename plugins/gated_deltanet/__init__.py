"""The ``gated_deltanet`` layer (symbol ``D``): Gated DeltaNet (Yang, Kautz & Hatamizadeh,
"Gated Delta Networks: Improving Mamba2 with Delta Rule", ICLR 2025) as in flash-linear-attention
and Qwen3-Next; transformers' ``Qwen3NextGatedDeltaNet`` converts
(:mod:`hybridzoo_plugins.gated_deltanet.convert`)."""

from __future__ import annotations

import attrs

from hybridzoo.plugin import (
    Capabilities,
    at_least,
    layer_spec,
    option,
    positive,
    power_of_two,
    specs_hook,
)
from hybridzoo_plugins.gated_deltanet import formulas

__all__ = ["SPEC", "GatedDeltaNetOptions"]


@attrs.frozen
class GatedDeltaNetOptions:
    """Options of the ``gated_deltanet`` layer (user prefix ``gated_deltanet_``)."""

    num_heads: int = option(
        4,
        doc="Query/key heads (and value heads unless num_v_heads is set).",
        validator=at_least(1),
        examples=(1, 2),
    )
    head_dim: int = option(
        64, doc="Query/key width per head dk.", validator=at_least(1), examples=(2, 4)
    )
    expand_v: float = option(
        1,
        doc="Value width per head dv = head_dim · expand_v (a whole number).",
        validator=positive,
        examples=(2, 0.5),
    )
    num_v_heads: int | None = option(
        None,
        doc="Value heads, a multiple of num_heads (grouped value heads, as Qwen3-Next); "
        "None = num_heads.",
        validator=at_least(1, allow_none=True),
        examples=(8,),
    )
    conv_size: int = option(
        4,
        doc="Kernel of the causal convolutions over q, k and v.",
        validator=at_least(1),
        examples=(1, 2, 3),
    )
    norm_eps: float = option(1e-5, doc="Epsilon of the gated output RMSNorm.", validator=positive)
    chunk_size: int = option(
        64,
        doc="Chunk length of the delta-rule kernel, a power of two (speed only; same results).",
        validator=power_of_two,
        examples=(4,),
    )

    def __attrs_post_init__(self) -> None:
        formulas.value_head_dim(self.head_dim, self.expand_v)  # ValueErrors name the fields
        formulas.value_heads(self.num_heads, self.num_v_heads)


SPEC = layer_spec(
    __name__,
    name="gated_deltanet",
    symbol="D",
    options=GatedDeltaNetOptions,
    formulas=formulas,
    description="Gated DeltaNet: delta-rule matrix state with a scalar decay per head, short "
    "convolutions, gated RMSNorm.",
    capabilities=Capabilities(causal=True, stateful=True, complexity="linear", packing=True),
)

hybridzoo_layer_specs = specs_hook(SPEC)

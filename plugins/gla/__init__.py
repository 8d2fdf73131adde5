"""The ``gla`` layer (symbol ``G``): Gated Linear Attention (Yang et al., ICML 2024), a
data-dependent low-rank forget gate and a per-head matrix state, then an FFN sub-block."""

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
from hybridzoo_plugins.gla import formulas


@attrs.frozen
class GLAOptions:
    """Options of the ``gla`` layer (user prefix ``gla_``)."""

    num_heads: int = option(4, doc="Number of heads.", validator=at_least(1), examples=(1, 2))
    head_dim: int = option(64, doc="Value width per head.", validator=at_least(1), examples=(4, 8))
    expand_k: float = option(
        0.5,
        doc="Key width per head as a fraction of head_dim (head_dim · expand_k must be whole).",
        validator=positive,
        examples=(1.0,),
    )
    gate_low_rank_dim: int = option(
        16, doc="Rank of the forget-gate projection.", validator=at_least(1), examples=(2,)
    )
    gate_logit_normalizer: float = option(
        16.0, doc="Divides logsigmoid of the gate logits.", validator=positive, examples=(1.0,)
    )
    norm_eps: float = option(1e-5, doc="Epsilon of the per-head RMSNorm.", validator=positive)
    chunk_size: int = option(
        64,
        doc="Chunk length of the recurrence kernel, a power of two (speed only; same results).",
        validator=power_of_two,
        examples=(4,),
    )
    ffn_expand_factor: int = option(
        4,
        doc="Inner width of the FFN sub-block as a multiple of hidden_size.",
        validator=at_least(1),
        examples=(1,),
    )

    def __attrs_post_init__(self) -> None:
        formulas.key_width(self.head_dim, self.expand_k)  # raises ValueError naming both


SPEC = layer_spec(
    __name__,
    name="gla",
    symbol="G",
    options=GLAOptions,
    formulas=formulas,
    sub_blocks=2,
    description="Gated Linear Attention: data-dependent forget gate, per-head matrix state; "
    "then an FFN.",
    capabilities=Capabilities(causal=True, stateful=True, complexity="linear", packing=True),
)

hybridzoo_layer_specs = specs_hook(SPEC)

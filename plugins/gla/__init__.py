"""The ``gla`` layer (symbol ``G``): Gated Linear Attention (Yang et al., ICML 2024), a
data-dependent low-rank forget gate and a per-head matrix state, then an FFN sub-block."""

from __future__ import annotations

import attrs

from hybridzoo.plugin import (
    Capabilities,
    chunk_size_option,
    count_option,
    heads_option,
    layer_spec,
    norm_eps_option,
    positive_option,
    specs_hook,
)
from hybridzoo_plugins.gla import formulas


@attrs.frozen
class GLAOptions:
    """Options of the ``gla`` layer (user prefix ``gla_``)."""

    num_heads: int = heads_option()
    head_dim: int = count_option(64, doc="Value width per head.", examples=(4, 8))
    expand_k: float = positive_option(
        0.5,
        doc="Key width per head as a fraction of head_dim (head_dim · expand_k must be whole).",
        examples=(1.0,),
    )
    gate_low_rank_dim: int = count_option(
        16, doc="Rank of the forget-gate projection.", examples=(2,)
    )
    gate_logit_normalizer: float = positive_option(
        16.0, doc="Divides logsigmoid of the gate logits.", examples=(1.0,)
    )
    norm_eps: float = norm_eps_option("per-head RMSNorm")
    chunk_size: int = chunk_size_option()
    ffn_expand_factor: int = count_option(
        4, doc="Inner width of the FFN sub-block as a multiple of hidden_size.", examples=(1,)
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

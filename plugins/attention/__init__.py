"""The ``attention`` layer (symbol ``A``): causal multi-head attention (sliding-window or full,
grouped-query heads, optional RoPE, QK-norm and short input convolution), followed by a
feed-forward sub-block (none with ``attention_ffn_expand_factor=0``)."""

from __future__ import annotations

import math

import attrs

from hybridzoo.plugin import (
    Capabilities,
    at_least,
    boolean,
    in_range,
    layer_spec,
    one_of,
    option,
    specs_hook,
)
from hybridzoo_plugins.attention import formulas


@attrs.frozen
class AttentionOptions:
    """Options of the ``attention`` layer (user prefix ``attention_``)."""

    num_heads: int = option(4, doc="Query heads.", validator=at_least(1), examples=(1, 2))
    num_kv_heads: int | None = option(
        None,
        doc="Key/value heads, dividing num_heads (grouped-query attention; 1 = multi-query); "
        "None = num_heads. The decoding cache holds only these.",
        validator=at_least(1, allow_none=True),
        examples=(1,),
    )
    head_dim: int = option(
        64,
        doc="Width of each head (even when rotary is on: it turns channel pairs).",
        validator=at_least(1),
        examples=(4, 8),
    )
    window_size: int | None = option(
        60,
        doc="Each position attends to the last `window_size` positions (itself included, so at "
        "least 2: with 1 the queries and keys would have no effect); None = full causal.",
        validator=at_least(2, allow_none=True),
        examples=(2, 3, 8, None),
    )
    qk_norm: bool = option(
        True, doc="LayerNorm on each head's queries and keys.", validator=boolean, examples=(False,)
    )
    rope_base: float | None = option(
        10000.0,
        doc="Rotary embedding base; None = no rotary embedding (as Nemotron-H's attention).",
        validator=in_range(0.0, math.inf, low_open=True, high_open=True, allow_none=True),
        examples=(100.0, None),
    )
    bias: bool = option(
        False,
        doc="Biases on the q, k, v and output projections.",
        validator=boolean,
        examples=(True,),
    )
    conv_size: int = option(
        0,
        doc="Taps of a depthwise causal convolution on the attention's input (a short conv "
        "then attention, as the Based paper's and Zoology's baselines); 0 = none.",
        validator=at_least(0),
        examples=(3,),
    )
    ffn_expand_factor: int = option(
        4,
        doc="Inner width of the FFN sub-block as a multiple of hidden_size (Edifice: 4); 0 = no "
        "FFN sub-block (attention alone, as Zoology's paper baseline or Nemotron-H).",
        validator=at_least(0),
        examples=(1, 0),
    )
    ffn_activation: str = option(
        "gelu",
        doc="Activation of the FFN sub-block: 'gelu', 'relu2' or 'swiglu' (as the ffn layer).",
        validator=one_of("gelu", "relu2", "swiglu"),
        examples=("swiglu",),
    )

    def __attrs_post_init__(self) -> None:
        kv_heads = self.num_kv_heads or self.num_heads
        if self.num_heads % kv_heads:
            raise ValueError(
                f"attention_num_kv_heads ({kv_heads}) must divide attention_num_heads "
                f"({self.num_heads})"
            )
        if self.rope_base is not None and self.head_dim % 2:
            raise ValueError(
                f"attention_head_dim ({self.head_dim}) must be even with rotary embeddings "
                "(attention_rope_base=None turns them off)"
            )


SPEC = layer_spec(
    __name__,
    name="attention",
    symbol="A",
    options=AttentionOptions,
    formulas=formulas,
    description="Causal attention (sliding-window or full; GQA, RoPE, QK-norm, short conv), "
    "then an FFN.",
    capabilities=Capabilities(causal=True, stateful=True, complexity="linear", packing=True),
)

hybridzoo_layer_specs = specs_hook(SPEC)

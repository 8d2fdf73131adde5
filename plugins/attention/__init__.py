"""The ``attention`` layer (symbol ``A``): sliding-window causal multi-head attention with RoPE
and QK-norm, followed by a feed-forward sub-block. Time and memory O(L·window)."""

from __future__ import annotations

import math
from typing import Any

import attrs

from hybridzoo import Capabilities, LayerSpec, hookimpl, option
from hybridzoo.spec import boolean, float_in, int_at_least
from hybridzoo_plugins.attention import formulas


@attrs.frozen
class AttentionOptions:
    """Options of the ``attention`` layer (user prefix ``attention_``)."""

    num_heads: int = option(
        4, doc="Number of attention heads.", validator=int_at_least(1), examples=(1, 2)
    )
    head_dim: int = option(
        64,
        doc="Width of each head (even: rotary rotates channel pairs).",
        validator=int_at_least(2, multiple_of=2),
        examples=(4, 8),
    )
    window_size: int | None = option(
        60,
        doc="Each position attends to the last `window_size` positions (itself included, so at "
        "least 2: with 1 the queries and keys would have no effect); None = full causal.",
        validator=int_at_least(2, allow_none=True),
        examples=(2, 3, 8, None),
    )
    qk_norm: bool = option(
        True, doc="LayerNorm on each head's queries and keys.", validator=boolean, examples=(False,)
    )
    rope_base: float = option(
        10000.0,
        doc="Rotary embedding base.",
        validator=float_in(0.0, math.inf, low_open=True, high_open=True),
        examples=(100.0,),
    )
    bias: bool = option(
        False,
        doc="Biases on the q, k, v and output projections.",
        validator=boolean,
        examples=(True,),
    )
    ffn_expand_factor: int = option(
        4,
        doc="Inner width of the FFN sub-block as a multiple of hidden_size (Edifice: 4).",
        validator=int_at_least(1),
        examples=(1, 2),
    )


def _factory(options: AttentionOptions, hidden_size: int) -> Any:
    from hybridzoo_plugins.attention.layer import make_attention_bodies

    return make_attention_bodies(hidden_size, **attrs.asdict(options))


def _param_count(options: AttentionOptions, hidden_size: int) -> int:
    return formulas.param_count(hidden_size, **attrs.asdict(options))


def _state_size(options: AttentionOptions, hidden_size: int) -> int | None:
    if options.window_size is None:
        return None  # the key/value cache grows with the sequence
    return formulas.state_size(hidden_size, **attrs.asdict(options))


def _scale_options(
    options: AttentionOptions, hidden_size: int, *, seq_len: int | None = None
) -> AttentionOptions:
    """Heads split the width (``head_dim = hidden_size // num_heads``, even, at least 2); with a
    known sequence length the window covers all of it (as in Zoology)."""
    head_dim = max(2, hidden_size // options.num_heads // 2 * 2)
    window = options.window_size if seq_len is None else max(2, seq_len)
    return attrs.evolve(options, head_dim=head_dim, window_size=window)


def _reference(body: Any, x: Any) -> Any:
    from hybridzoo_plugins.attention.reference import reference_forward

    return reference_forward(body, x)


SPEC = LayerSpec(
    name="attention",
    symbol="A",
    option_prefix="attention",
    options=AttentionOptions,
    factory=_factory,
    param_count=_param_count,
    description="Sliding-window causal multi-head attention (RoPE, QK-norm), then an FFN.",
    capabilities=Capabilities(causal=True, stateful=True, complexity="linear"),
    state_size=_state_size,
    sub_blocks=2,
    reference=_reference,
    scale_options=_scale_options,
)


@hookimpl
def hybridzoo_layer_specs() -> list[LayerSpec]:
    return [SPEC]

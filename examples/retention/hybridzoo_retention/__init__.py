"""hybridzoo-retention: RetNet's multi-scale retention as a hybridzoo layer plugin.

Installed, it adds the layer ``retention`` (symbol ``T``, for reTention: ``R`` is taken by RWKV),
with options prefixed ``retention_``::

    import hybridzoo
    model = hybridzoo.build("M T A", embed_dim=64, retention_num_heads=4)

This module is what the entry point names; it imports no torch (the factory imports the layer).
"""

from __future__ import annotations

from typing import Any

import attrs
from hybridzoo import Capabilities, LayerSpec, hookimpl, option
from hybridzoo.spec import float_in, int_at_least

from hybridzoo_retention import formulas

__all__ = ["SPEC", "RetentionOptions", "hybridzoo_layer_specs"]

__version__ = "0.1.0"


def _even(_inst: Any, attribute: attrs.Attribute, value: Any) -> None:
    int_at_least(2)(_inst, attribute, value)
    if value % 2:
        raise ValueError(
            f"{attribute.name} must be even (rotary rotates channel pairs), got {value!r}"
        )


@attrs.frozen
class RetentionOptions:
    """Options of the ``retention`` layer (user prefix ``retention_``)."""

    num_heads: int = option(
        4,
        doc="Retention heads; head h decays with gamma_h = 1 - 2^(-5-h).",
        validator=int_at_least(1),
        examples=(1, 2),
    )
    head_dim: int = option(
        32,
        doc="Query/key width per head (even: rotary rotates pairs).",
        validator=_even,
        examples=(4, 8),
    )
    value_factor: int = option(
        2,
        doc="Value width per head as a multiple of head_dim (RetNet: 2).",
        validator=int_at_least(1),
        examples=(1,),
    )
    chunk_size: int = option(
        64,
        doc="Positions per chunk of the chunkwise form (speed and memory only, not the result).",
        validator=int_at_least(1),
        examples=(1, 3, 16),
    )
    rope_base: float = option(
        10000.0,
        doc="Base of the rotary (xPos) angles: pair i turns by n * base^(-2i/head_dim).",
        validator=float_in(1.0, 1e12, low_open=True),
        examples=(100.0,),
    )
    ffn_expand_factor: int = option(
        4,
        doc="Inner width of the feed-forward sub-block as a multiple of hidden_size.",
        validator=int_at_least(1),
        examples=(1, 2),
    )


def _kwargs(options: RetentionOptions) -> dict[str, int]:
    return {
        "num_heads": options.num_heads,
        "head_dim": options.head_dim,
        "value_factor": options.value_factor,
    }


def _factory(options: RetentionOptions, hidden_size: int) -> list[Any]:
    from hybridzoo.nn import FeedForward

    from hybridzoo_retention.layer import MultiScaleRetention

    retention = MultiScaleRetention(
        hidden_size,
        **_kwargs(options),
        chunk_size=options.chunk_size,
        rope_base=options.rope_base,
    )
    return [retention, FeedForward(hidden_size, options.ffn_expand_factor)]


def _param_count(options: RetentionOptions, hidden_size: int) -> int:
    return formulas.param_count(
        hidden_size, **_kwargs(options), ffn_expand_factor=options.ffn_expand_factor
    )


def _state_size(options: RetentionOptions, hidden_size: int) -> int:
    return formulas.state_size(options.num_heads, options.head_dim, options.value_factor)


def _reference(body: Any, x: Any) -> Any:
    from hybridzoo_retention.reference import retention_reference

    return retention_reference(body, x)


SPEC = LayerSpec(
    name="retention",
    symbol="T",
    option_prefix="retention",
    options=RetentionOptions,
    factory=_factory,
    param_count=_param_count,
    description="RetNet multi-scale retention (fixed per-head decay, rotary, group norm, "
    "swish gate; chunkwise + recurrent), then an FFN.",
    capabilities=Capabilities(causal=True, stateful=True, complexity="linear"),
    state_size=_state_size,
    sub_blocks=2,
    reference=_reference,
    api_version=1,
)


@hookimpl
def hybridzoo_layer_specs() -> list[LayerSpec]:
    """The one layer this plugin provides."""
    return [SPEC]

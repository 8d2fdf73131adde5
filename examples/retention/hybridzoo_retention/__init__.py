"""hybridzoo-retention: RetNet's multi-scale retention as a hybridzoo layer plugin.

Installed, it adds the layer ``retention`` (symbol ``T``, for reTention: ``R`` is taken by RWKV),
with options prefixed ``retention_``::

    import hybridzoo
    model = hybridzoo.build("M T A", embed_dim=64, retention_num_heads=4)

This module is what the entry point names; it imports no torch (the factory and the reference are
import strings, imported when a model is built: :func:`hybridzoo.plugin.layer_spec` names them by
the convention and takes the formulas from ``formulas.py`` by their names). It follows
hybridzoo's layer-plugin convention: the options record here, ``formulas.py`` (torch-free
counts), ``layer.py`` (the module and ``make_bodies``), ``reference.py`` (the recurrent form, one
token at a time).
"""

from __future__ import annotations

from typing import Any

import attrs
from hybridzoo.plugin import (
    Capabilities,
    at_least,
    count_option,
    heads_option,
    in_range,
    layer_spec,
    option,
    specs_hook,
)

from hybridzoo_retention import formulas

__all__ = ["SPEC", "RetentionOptions", "hybridzoo_layer_specs"]

__version__ = "0.1.0"

_EVEN = at_least(2, multiple_of=2)


def _even(_inst: Any, attribute: attrs.Attribute, value: Any) -> None:
    """Rotary rotates channel pairs: an even width (the message names the field)."""
    _EVEN.check(attribute.name, value)


@attrs.frozen
class RetentionOptions:
    """Options of the ``retention`` layer (user prefix ``retention_``), each declared once: the
    formulas and :func:`hybridzoo_retention.layer.make_bodies` take this record."""

    num_heads: int = heads_option(doc="Retention heads; head h decays with gamma_h = 1 - 2^(-5-h).")
    head_dim: int = option(
        32,
        doc="Query/key width per head (even: rotary rotates pairs).",
        validator=_even,
        examples=(4, 8),
    )
    value_factor: int = count_option(
        2, doc="Value width per head as a multiple of head_dim (RetNet: 2).", examples=(1,)
    )
    chunk_size: int = count_option(
        64,
        doc="Positions per chunk of the chunkwise form (speed and memory only, not the result).",
        examples=(1, 3, 16),
    )
    rope_base: float = option(
        10000.0,
        doc="Base of the rotary (xPos) angles: pair i turns by n * base^(-2i/head_dim).",
        validator=in_range(1.0, 1e12, low_open=True),
        examples=(100.0,),
    )
    ffn_expand_factor: int = count_option(
        4,
        doc="Inner width of the feed-forward sub-block as a multiple of hidden_size.",
        examples=(1, 2),
    )


SPEC = layer_spec(
    __name__,
    name="retention",
    symbol="T",
    options=RetentionOptions,
    formulas=formulas,
    sub_blocks=2,
    reference=f"{__name__}.reference:retention_reference",
    description="RetNet multi-scale retention (fixed per-head decay, rotary, group norm, "
    "swish gate; chunkwise + recurrent), then an FFN.",
    # the decoding position is one counter shared by the batch (a 0-dim tensor), so rows of
    # states cannot be selected or concatenated: generation decodes prompts one at a time
    capabilities=Capabilities(causal=True, stateful=True, complexity="linear", batched_state=False),
    api_version=2,
)

#: The hook hybridzoo calls once, on first use: the one layer this plugin provides.
hybridzoo_layer_specs = specs_hook(SPEC)

"""Closed formulas of the ``attention`` layer (no torch): parameters, decoding state, sub-blocks
and width scaling.

The layer is the attention body and, unless ``ffn_expand_factor`` is 0, a feed-forward body
(see ``make_bodies`` in :mod:`hybridzoo_plugins.attention.layer`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import attrs

from hybridzoo.plugin import (
    LayerFlops,
    Notation,
    Setting,
    causal_context,
    feedforward_flops,
    feedforward_param_count,
    linear_flops,
)

if TYPE_CHECKING:  # pragma: no cover
    from hybridzoo_plugins.attention import AttentionOptions


def kv_heads(o: AttentionOptions) -> int:
    """Key/value heads: ``num_kv_heads``, or ``num_heads`` when it is None."""
    return o.num_kv_heads or o.num_heads


def attention_param_count(o: AttentionOptions, hidden_size: int) -> int:
    """The attention body, with ``Q = heads·d`` and ``K = kv_heads·d``:

    - q projection ``H → Q`` and output projection ``Q → H``: ``2·H·Q`` (+ ``Q + H`` biases);
    - k and v projections ``H → K``: ``2·H·K`` (+ ``2·K`` biases);
    - QK-norm (if on): one LayerNorm over ``d`` for q and one for k, shared by the heads:
      ``4·d``;
    - the input convolution (``conv_size = c > 0``): ``c·H`` taps and ``H`` biases.

    Rotary embeddings have no parameters.
    """
    queries = o.num_heads * o.head_dim
    keys = kv_heads(o) * o.head_dim
    count = 2 * hidden_size * queries + 2 * hidden_size * keys
    if o.bias:
        count += queries + 2 * keys + hidden_size
    if o.qk_norm:
        count += 4 * o.head_dim
    if o.conv_size:
        count += (o.conv_size + 1) * hidden_size
    return count


def param_count(o: AttentionOptions, hidden_size: int) -> int:
    """The attention body plus its feed-forward body (if any)."""
    ffn = 0
    if o.ffn_expand_factor:
        ffn = feedforward_param_count(hidden_size, o.ffn_expand_factor, activation=o.ffn_activation)
    return attention_param_count(o, hidden_size) + ffn


def sub_blocks(o: AttentionOptions) -> int:
    """2 (attention, feed-forward), or 1 with ``ffn_expand_factor = 0``."""
    return 2 if o.ffn_expand_factor else 1


def state_size(o: AttentionOptions, hidden_size: int) -> int | None:
    """Elements per sequence of the decoding state with a window ``w``:
    ``2·kv_heads·w·d`` cached keys and values, 1 position counter and, with a convolution of
    ``c`` taps, its ``(c-1)·H`` last inputs. ``None`` for full attention (``window_size=None``):
    the cache grows with the tokens seen."""
    if o.window_size is None:
        return None
    conv = (o.conv_size - 1) * hidden_size if o.conv_size > 1 else 0
    return 2 * kv_heads(o) * o.window_size * o.head_dim + 1 + conv


def scale_options(
    o: AttentionOptions, hidden_size: int, *, seq_len: int | None = None
) -> AttentionOptions:
    """Heads split the width (``head_dim = hidden_size // num_heads``, even, at least 2); with a
    known sequence length the window covers all of it (as in Zoology)."""
    head_dim = max(2, hidden_size // o.num_heads // 2 * 2)
    window = o.window_size if seq_len is None or o.window_size is None else max(2, seq_len)
    return attrs.evolve(o, head_dim=head_dim, window_size=window)


def flops(o: AttentionOptions, hidden_size: int, seq_len: int) -> LayerFlops:
    """Forward FLOPs on ``seq_len`` positions. Matmul, per position: q and output
    ``2·(2·H·Q)``, k and v ``2·(2·H·K)``, and the feed-forward sub-block. Mixer: the scores
    ``q·k`` and the weighted values, ``4·d`` per query head and key seen, over the keys each
    query sees (:func:`~hybridzoo.plugin.causal_context`: ``L(L+1)/2`` without a window), and
    the input convolution ``2·H·c`` per position; the softmax is not counted."""
    queries, keys = o.num_heads * o.head_dim, kv_heads(o) * o.head_dim
    per = 2 * linear_flops(hidden_size, queries) + 2 * linear_flops(hidden_size, keys)
    if o.ffn_expand_factor:
        per += feedforward_flops(hidden_size, o.ffn_expand_factor, activation=o.ffn_activation)
    mixer = 4 * o.num_heads * o.head_dim * causal_context(seq_len, o.window_size)
    mixer += 2 * hidden_size * o.conv_size * seq_len
    return LayerFlops(per * seq_len, mixer)


def _conv_window(o: AttentionOptions, hidden_size: int) -> int:
    return (o.conv_size - 1) * hidden_size if o.conv_size > 1 else 0


def state_bytes(o: AttentionOptions, hidden_size: int, itemsize: int) -> int:
    """Bytes of the decoding state: the caches (a window's worth; none counted without a
    window, where they grow by :func:`kv_cache_size` per token), the convolution window, and
    the ``int64`` position counter (8 bytes)."""
    cache = 0 if o.window_size is None else kv_cache_size(o, hidden_size) * o.window_size
    return (cache + _conv_window(o, hidden_size)) * itemsize + 8


def kv_cache_size(o: AttentionOptions, hidden_size: int) -> int:
    """Elements the key/value cache holds per cached position: ``2·kv_heads·d``."""
    return 2 * kv_heads(o) * o.head_dim


_FULL = {"ffn_expand_factor": 0, "window_size": None}
_NO_NORM = {**_FULL, "qk_norm": False}

#: How other projects write this layer: attention alone (the feed-forward is a layer of its own
#: there, hybridzoo's ``ffn`` or ``moe``).
NOTATIONS = (
    Notation(
        "megatron",
        "*",
        {
            "ffn_expand_factor": 0,
            "window_size": Setting("window_size", None),
            "qk_norm": Setting("qk_layernorm", False),
        },
    ),
    Notation(
        "transformers",
        "full_attention",
        {**_NO_NORM, "rope_base": None},
        models=("nemotron_h", "jamba"),
    ),
    Notation(
        "transformers",
        "full_attention",
        {**_FULL, "qk_norm": True},
        models=("qwen3_next",),
        note="Qwen3-Next's attention gates its output, rotates part of each head only and "
        "normalises q and k with RMSNorms; hybridzoo's attention rotates whole heads, has no "
        "output gate and uses LayerNorms",
    ),
    Notation("transformers", "full_attention", _NO_NORM),
    Notation("transformers", "attention", _NO_NORM),  # the legacy name
    Notation(
        "transformers",
        "sliding_attention",
        {"ffn_expand_factor": 0, "qk_norm": False, "window_size": Setting("sliding_window")},
    ),
)

"""Closed formulas for the attention layer: parameter count and decoding-state size (no torch).

The attention *layer* is two bodies (see ``make_attention_bodies`` in
:mod:`hybridzoo_plugins.attention.layer`): the sliding-window attention body and the feed-forward
body that follows it.
"""

from __future__ import annotations

from hybridzoo.formulas import feedforward_param_count


def attention_param_count(
    hidden_size: int,
    *,
    num_heads: int = 4,
    head_dim: int = 64,
    qk_norm: bool = True,
    bias: bool = False,
) -> int:
    """Exact parameter count of one :class:`SlidingWindowAttention` body.

    - q, k, v projections ``H → heads·head_dim``: ``3·H·D`` weights (+ ``3·D`` biases),
      where ``D = heads·head_dim``;
    - output projection ``D → H``: ``D·H`` weights (+ ``H`` biases);
    - QK norm (if on): one LayerNorm over ``head_dim`` for q and one for k, each with a weight and
      a bias shared by all heads: ``4·head_dim``.

    Rotary embeddings have no parameters.
    """
    inner = num_heads * head_dim
    count = 4 * hidden_size * inner
    if bias:
        count += 3 * inner + hidden_size
    if qk_norm:
        count += 4 * head_dim
    return count


def param_count(
    hidden_size: int,
    *,
    num_heads: int = 4,
    head_dim: int = 64,
    window_size: int | None = 60,
    qk_norm: bool = True,
    rope_base: float = 10000.0,
    bias: bool = False,
    ffn_expand_factor: int = 4,
) -> int:
    """Exact parameter count of one attention layer: the attention body plus its FFN body.

    Takes the same keywords as ``make_attention_bodies``; ``window_size`` and ``rope_base`` do not
    change the count.
    """
    del window_size, rope_base  # no parameters depend on them
    return attention_param_count(
        hidden_size, num_heads=num_heads, head_dim=head_dim, qk_norm=qk_norm, bias=bias
    ) + feedforward_param_count(hidden_size, ffn_expand_factor)


def state_size(
    hidden_size: int,
    *,
    num_heads: int = 4,
    head_dim: int = 64,
    window_size: int | None = 60,
    qk_norm: bool = True,
    rope_base: float = 10000.0,
    bias: bool = False,
    ffn_expand_factor: int = 4,
    seq_len: int | None = None,
) -> int:
    """Number of cached floating-point values per batch row in the decoding state.

    The state is a key cache and a value cache of ``[heads, capacity, head_dim]`` each (plus one
    integer position counter shared by the batch, not counted here).

    - ``window_size = w``: a ring buffer of exactly ``w`` entries, whatever ``seq_len`` is:
      ``2·heads·w·head_dim``.
    - ``window_size = None`` (full causal attention): the cache holds every token seen, so the size
      depends on the number of tokens ``seq_len`` (required): ``2·heads·seq_len·head_dim``. (The
      buffer actually allocated may be larger: its capacity doubles when full.)

    The other keywords (same as ``make_attention_bodies``) are accepted for a uniform signature;
    the state does not depend on them (the FFN body is stateless).
    """
    del hidden_size, qk_norm, rope_base, bias, ffn_expand_factor
    if window_size is None:
        if seq_len is None:
            raise ValueError(
                "state_size with window_size=None (full attention) needs seq_len: the key/value "
                "cache grows with the number of tokens seen"
            )
        return 2 * num_heads * seq_len * head_dim
    return 2 * num_heads * window_size * head_dim

"""Closed formulas for the retention layer (no torch): parameters, state size, head decays."""

from __future__ import annotations

import math


def head_log_decays(num_heads: int) -> list[float]:
    """``log γ_h`` for ``h = 0 .. num_heads-1`` with RetNet's ``γ_h = 1 - 2^(-5-h)``.

    Computed as ``log1p(-2^(-5-h))`` so that heads whose ``γ`` rounds to 1 in float32 still decay.
    """
    return [math.log1p(-(2.0 ** (-5 - h))) for h in range(num_heads)]


def retention_param_count(
    hidden_size: int, *, num_heads: int, head_dim: int, value_factor: int
) -> int:
    """Exact parameter count of one :class:`MultiScaleRetention` body.

    With ``D_k = heads·head_dim`` and ``D_v = value_factor·D_k``:

    - ``W_Q, W_K``: ``H → D_k`` each, no bias: ``2·H·D_k``;
    - ``W_V, W_G``: ``H → D_v`` each, no bias: ``2·H·D_v``;
    - ``W_O``: ``D_v → H``, no bias: ``D_v·H``;
    - the group norm (one group per head): a weight and a bias per channel, ``2·D_v``.

    The decays ``γ_h`` and the rotary angles are fixed, not parameters.
    """
    d_k = num_heads * head_dim
    d_v = value_factor * d_k
    return 2 * hidden_size * d_k + 3 * hidden_size * d_v + 2 * d_v


def feedforward_param_count(hidden_size: int, expand_factor: int) -> int:
    """``hybridzoo.nn.FeedForward``: ``Linear(H, eH) → GELU → Linear(eH, H)`` with biases."""
    inner = expand_factor * hidden_size
    return 2 * hidden_size * inner + inner + hidden_size


def param_count(
    hidden_size: int, *, num_heads: int, head_dim: int, value_factor: int, ffn_expand_factor: int
) -> int:
    """One retention layer: the retention body plus its feed-forward body."""
    return retention_param_count(
        hidden_size, num_heads=num_heads, head_dim=head_dim, value_factor=value_factor
    ) + feedforward_param_count(hidden_size, ffn_expand_factor)


def state_size(num_heads: int, head_dim: int, value_factor: int) -> int:
    """Elements of decoding state per sequence: one ``[head_dim, value_factor·head_dim]`` matrix
    per head (the position counter, shared by the batch, is not counted)."""
    return num_heads * head_dim * value_factor * head_dim

"""Closed formulas for the retention layer (no torch): parameters, state size, head decays.

The counts take the options record (:class:`hybridzoo_retention.RetentionOptions`).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from hybridzoo.plugin import feedforward_param_count

if TYPE_CHECKING:  # pragma: no cover
    from hybridzoo_retention import RetentionOptions


def head_log_decays(num_heads: int) -> list[float]:
    """``log γ_h`` for ``h = 0 .. num_heads-1`` with RetNet's ``γ_h = 1 - 2^(-5-h)``.

    Computed as ``log1p(-2^(-5-h))`` so that heads whose ``γ`` rounds to 1 in float32 still decay.
    """
    return [math.log1p(-(2.0 ** (-5 - h))) for h in range(num_heads)]


def retention_param_count(o: RetentionOptions, hidden_size: int) -> int:
    """Exact parameter count of one :class:`MultiScaleRetention` body.

    With ``D_k = heads·head_dim`` and ``D_v = value_factor·D_k``:

    - ``W_Q, W_K``: ``H → D_k`` each, no bias: ``2·H·D_k``;
    - ``W_V, W_G``: ``H → D_v`` each, no bias: ``2·H·D_v``;
    - ``W_O``: ``D_v → H``, no bias: ``D_v·H``;
    - the group norm (one group per head): a weight and a bias per channel, ``2·D_v``.

    The decays ``γ_h`` and the rotary angles are fixed, not parameters.
    """
    d_k = o.num_heads * o.head_dim
    d_v = o.value_factor * d_k
    return 2 * hidden_size * d_k + 3 * hidden_size * d_v + 2 * d_v


def param_count(o: RetentionOptions, hidden_size: int) -> int:
    """One retention layer: the retention body plus its feed-forward body
    (:class:`hybridzoo.nn.FeedForward`, ``Linear(H, eH) → GELU → Linear(eH, H)`` with biases)."""
    return retention_param_count(o, hidden_size) + feedforward_param_count(
        hidden_size, o.ffn_expand_factor
    )


def state_size(o: RetentionOptions, hidden_size: int) -> int:
    """Elements of decoding state per sequence: one ``[head_dim, value_factor·head_dim]`` matrix
    per head (the position counter, shared by the batch, is not counted)."""
    return o.num_heads * o.head_dim * o.value_factor * o.head_dim

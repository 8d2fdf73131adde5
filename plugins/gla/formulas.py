"""Closed formulas for the GLA layer, from its options record (no torch).

The ``gla`` layer is two bodies (:func:`hybridzoo_plugins.gla.layer.make_bodies`): the
:class:`~hybridzoo_plugins.gla.layer.GatedLinearAttention` body and the feed-forward after it.
Widths (``H`` = hidden_size, ``h`` = num_heads): each head has a value width ``dv = head_dim`` and
a key width ``dk = head_dim · expand_k``; keys are ``K = h·dk`` wide, values ``V = h·dv``. With
Edifice's defaults (``H = 256``, 4 heads of 64) and ``expand_k = 0.5`` this is
flash-linear-attention's GLA default (``expand_k = 0.5``, ``expand_v = 1``): ``K = H/2``, ``V = H``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import attrs

from hybridzoo.plugin import (
    LayerFlops,
    feedforward_flops,
    feedforward_param_count,
    whole_product,
)

if TYPE_CHECKING:  # pragma: no cover
    from hybridzoo_plugins.gla import GLAOptions

__all__ = [
    "flops",
    "gla_param_count",
    "key_width",
    "param_count",
    "scale_options",
    "state_size",
]


def key_width(head_dim: int, expand_k: float) -> int:
    """Key width per head ``dk = head_dim · expand_k``; it must be a whole number >= 1."""
    return whole_product("head_dim", head_dim, "expand_k", expand_k, what="the key width per head")


def gla_param_count(o: GLAOptions, hidden_size: int) -> int:
    """Parameters of one GatedLinearAttention body (biases only on the gate's second linear):
    q, k ``2·H·K``; v and the output gate ``2·H·V``; forget gate ``H·r + r·K + K``; the per-head
    RMSNorm weight shared by the heads ``dv``; output ``V·H``."""
    H, r = hidden_size, o.gate_low_rank_dim
    keys, values = o.num_heads * key_width(o.head_dim, o.expand_k), o.num_heads * o.head_dim
    return 2 * H * keys + 3 * H * values + H * r + r * keys + keys + o.head_dim


def param_count(o: GLAOptions, hidden_size: int) -> int:
    """Parameters of one gla layer: the GLA body plus its FFN body."""
    ffn = feedforward_param_count(hidden_size, o.ffn_expand_factor)
    return gla_param_count(o, hidden_size) + ffn


def state_size(o: GLAOptions, hidden_size: int) -> int:
    """Step-mode state per sequence: one ``[heads, dk, dv]`` matrix (the FFN holds none)."""
    return o.num_heads * key_width(o.head_dim, o.expand_k) * o.head_dim


def scale_options(o: GLAOptions, hidden_size: int, *, seq_len: int | None = None) -> GLAOptions:
    """Heads split the width: ``head_dim = hidden_size // num_heads``, even (keys are half as
    wide with the default ``expand_k``), at least 2."""
    return attrs.evolve(o, head_dim=max(2, hidden_size // o.num_heads // 2 * 2))


def flops(o: GLAOptions, hidden_size: int, seq_len: int) -> LayerFlops:
    """Forward FLOPs on ``seq_len`` positions. Matmul, per position: q, k ``2·(2·H·K)``; v and
    the output gate ``2·(2·H·V)``; the low-rank forget gate ``2·(H·r + r·K)``; the output
    ``2·V·H``; the FFN sub-block. Mixer, per position: the recurrence in its step form,
    ``5·h·dk·dv`` (per state element: the decay, ``kᵀv``, the addition, the readout ``q·S``);
    the norm and the gates are not counted."""
    H, r = hidden_size, o.gate_low_rank_dim
    dk = key_width(o.head_dim, o.expand_k)
    keys, values = o.num_heads * dk, o.num_heads * o.head_dim
    per = 2 * (2 * H * keys + 3 * H * values + H * r + r * keys)
    per += feedforward_flops(H, o.ffn_expand_factor)
    return LayerFlops(per * seq_len, 5 * o.num_heads * dk * o.head_dim * seq_len)

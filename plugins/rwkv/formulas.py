"""Closed formulas for the RWKV-6 ("Finch") bodies, from the options record (no torch).

The core counts a model's parameters without building it. RWKV-LM (BlinkDL) uses LoRA ranks of
32/64 below ``n_embd = 4096`` and 64/128 from there on; here the ranks are plain options with the
small-model values as defaults.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import attrs

from hybridzoo.plugin import LayerFlops, at_least, positive

if TYPE_CHECKING:  # pragma: no cover
    from hybridzoo_plugins.rwkv import RWKVOptions

__all__ = [
    "NUM_MIXES",
    "channel_mix_param_count",
    "check_head_size",
    "ffn_size",
    "flops",
    "hidden_size_multiple",
    "param_count",
    "scale_options",
    "state_size",
    "time_mix_param_count",
]

#: How many data-dependent interpolations the time-mix LoRA produces (w, k, v, r, g).
NUM_MIXES = 5


def check_head_size(hidden_size: int, head_size: int) -> int:
    """Validate ``hidden_size`` and ``head_size``; return the number of heads."""
    at_least(1).check("hidden_size", hidden_size)
    at_least(1).check("head_size", head_size)
    if hidden_size % head_size != 0:
        divisors = [d for d in range(1, hidden_size + 1) if hidden_size % d == 0][-4:]
        raise ValueError(
            f"RWKV-6 needs hidden_size to be a multiple of head_size: hidden_size={hidden_size} "
            f"is not divisible by head_size={head_size} (valid head sizes for this hidden size "
            f"are its divisors, e.g. {', '.join(map(str, divisors))})"
        )
    return hidden_size // head_size


def ffn_size(hidden_size: int, expand: float = 3.5, multiple_of: int = 32) -> int:
    """Hidden size of the channel-mix: ``int(expand * hidden_size)`` rounded down to a multiple of
    ``multiple_of`` (RWKV-LM's ``dim_ffn``), and at least ``multiple_of`` for tiny models."""
    at_least(1).check("hidden_size", hidden_size)
    at_least(1).check("multiple_of", multiple_of)
    expand = positive.check("expand", expand)
    return max(multiple_of, int(expand * hidden_size) // multiple_of * multiple_of)


def time_mix_param_count(o: RWKVOptions, hidden_size: int) -> int:
    """Parameters of ``RWKV6TimeMix``: ``5·H²`` (receptance, key, value, gate, output; no
    biases) ``+ 10·r·H`` (token-shift LoRA ``[H, 5r]`` and ``[5, r, H]``) ``+ 2·d·H`` (decay
    LoRA) ``+ 10·H`` (six ``time_maa``, the decay base, the bonus ``u``, the GroupNorm)."""
    check_head_size(hidden_size, o.head_size)
    h, r, d = hidden_size, o.mix_rank, o.decay_rank
    return 5 * h * h + 2 * NUM_MIXES * r * h + 2 * d * h + 10 * h


def channel_mix_param_count(o: RWKVOptions, hidden_size: int) -> int:
    """Parameters of ``RWKV6ChannelMix``: ``H² + 2·F·H + 2·H`` with ``F`` from :func:`ffn_size`
    (key ``H→F``, value ``F→H``, receptance ``H→H``, two ``time_maa``)."""
    f = ffn_size(hidden_size, o.expand, o.multiple_of)
    return hidden_size * hidden_size + 2 * f * hidden_size + 2 * hidden_size


def param_count(o: RWKVOptions, hidden_size: int) -> int:
    """Parameters of the whole block (time-mix + channel-mix, without the core's pre-norms)."""
    return time_mix_param_count(o, hidden_size) + channel_mix_param_count(o, hidden_size)


def state_size(o: RWKVOptions, hidden_size: int) -> int:
    """Step-mode state per sequence: the time-mix's previous token ``[H]`` and WKV state
    ``[H/head_size, head_size, head_size]``, the channel-mix's previous token ``[H]``:
    ``2·H + H·head_size`` elements."""
    heads = check_head_size(hidden_size, o.head_size)
    return 2 * hidden_size + heads * o.head_size * o.head_size


def hidden_size_multiple(o: RWKVOptions) -> int:
    """Hidden sizes must be a multiple of the head size."""
    return o.head_size


def scale_options(o: RWKVOptions, hidden_size: int, *, seq_len: int | None = None) -> RWKVOptions:
    """WKV heads of ``min(64, hidden_size // 4)`` channels (four heads or more)."""
    return attrs.evolve(o, head_size=min(64, max(1, hidden_size // 4)))


def flops(o: RWKVOptions, hidden_size: int, seq_len: int) -> LayerFlops:
    """Forward FLOPs on ``seq_len`` positions. Matmul, per position: two per weight of the
    matrices (time-mix ``5·H² + 10·r·H + 2·d·H``, channel-mix ``H² + 2·F·H``). Mixer, per
    position: the WKV recurrence in its step form, ``7·H·head_size`` (per state element:
    ``kᵀv``, the bonus ``u``, the readout ``r·(S + u·kᵀv)``, the decay and the addition); the
    token-shift interpolations and the norm are not counted."""
    H, r, d = hidden_size, o.mix_rank, o.decay_rank
    f = ffn_size(H, o.expand, o.multiple_of)
    check_head_size(H, o.head_size)
    per = 2 * (5 * H * H + 2 * NUM_MIXES * r * H + 2 * d * H + H * H + 2 * f * H)
    return LayerFlops(per * seq_len, 7 * H * o.head_size * seq_len)

"""Closed formulas for the RWKV-6 ("Finch") bodies: parameter counts and step-mode state size.

Torch-free on purpose: the core counts a model's parameters without building it.

Options (keyword arguments, shared by :func:`param_count`, :func:`state_size` and
``hybridzoo_plugins.rwkv.layer.make_rwkv_bodies``):

========================  =======  ================================================================
name                      default  meaning
========================  =======  ================================================================
``head_size``             64       size of one WKV head; ``hidden_size`` must be a multiple of it
``mix_rank``              32       rank of the token-shift LoRA (``time_maa_w1``/``time_maa_w2``)
``decay_rank``            64       rank of the decay LoRA (``time_decay_w1``/``time_decay_w2``)
``head_size_divisor``     8        GroupNorm eps is ``1e-5 * head_size_divisor**2`` (RWKV-LM)
``init_depth``            0.5      relative depth in [0, 1] used by the depth-dependent init
``chunk_size``            64       chunk length of the WKV kernel (speed only)
``expand``                3.5      channel-mix hidden size ≈ ``expand * hidden_size``
``multiple_of``           32       channel-mix hidden size is rounded down to a multiple of this
========================  =======  ================================================================

RWKV-LM (BlinkDL) uses a LoRA rank of 32/64 below ``n_embd = 4096`` and 64/128 from there on; here
the ranks are plain options with the small-model values as defaults.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "CHANNEL_MIX_OPTIONS",
    "TIME_MIX_OPTIONS",
    "channel_mix_param_count",
    "channel_mix_state_size",
    "check_head_size",
    "ffn_size",
    "param_count",
    "split_options",
    "state_size",
    "time_mix_param_count",
    "time_mix_state_size",
]

#: Keyword options of ``RWKV6TimeMix`` and their defaults.
TIME_MIX_OPTIONS: dict[str, Any] = {
    "head_size": 64,
    "mix_rank": 32,
    "decay_rank": 64,
    "head_size_divisor": 8,
    "init_depth": 0.5,
    "chunk_size": 64,
}
#: Keyword options of ``RWKV6ChannelMix`` and their defaults.
CHANNEL_MIX_OPTIONS: dict[str, Any] = {"expand": 3.5, "multiple_of": 32}

#: How many data-dependent interpolations the time-mix LoRA produces (w, k, v, r, g).
NUM_MIXES = 5


def _check_int(name: str, value: Any, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an integer >= {minimum}, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return value


def split_options(opts: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Split keyword options between the time-mix and the channel-mix; unknown names raise."""
    unknown = sorted(set(opts) - set(TIME_MIX_OPTIONS) - set(CHANNEL_MIX_OPTIONS))
    if unknown:
        valid = ", ".join(sorted({**TIME_MIX_OPTIONS, **CHANNEL_MIX_OPTIONS}))
        raise TypeError(f"unknown RWKV-6 option(s) {', '.join(unknown)}; valid options: {valid}")
    time_kw = {k: v for k, v in opts.items() if k in TIME_MIX_OPTIONS}
    chan_kw = {k: v for k, v in opts.items() if k in CHANNEL_MIX_OPTIONS}
    return time_kw, chan_kw


def check_head_size(hidden_size: int, head_size: int) -> int:
    """Validate ``hidden_size`` and ``head_size``; return the number of heads."""
    _check_int("hidden_size", hidden_size)
    _check_int("head_size", head_size)
    if hidden_size % head_size != 0:
        raise ValueError(
            f"RWKV-6 needs hidden_size to be a multiple of head_size: hidden_size={hidden_size} "
            f"is not divisible by head_size={head_size} (valid head sizes for this hidden size "
            f"are its divisors, e.g. {_divisors_hint(hidden_size)})"
        )
    return hidden_size // head_size


def _divisors_hint(n: int) -> str:
    divs = [d for d in range(1, n + 1) if n % d == 0]
    return ", ".join(str(d) for d in divs[-4:])


def ffn_size(hidden_size: int, expand: float = 3.5, multiple_of: int = 32) -> int:
    """Hidden size of the channel-mix: ``int(expand * hidden_size)`` rounded down to a multiple of
    ``multiple_of`` (RWKV-LM's ``dim_ffn``), and at least ``multiple_of`` for tiny models."""
    _check_int("hidden_size", hidden_size)
    _check_int("multiple_of", multiple_of)
    if isinstance(expand, bool) or not isinstance(expand, int | float) or not expand > 0:
        raise ValueError(f"expand must be a number > 0, got {expand!r}")
    return max(multiple_of, int(expand * hidden_size) // multiple_of * multiple_of)


def time_mix_param_count(
    hidden_size: int,
    *,
    head_size: int = 64,
    mix_rank: int = 32,
    decay_rank: int = 64,
    **_ignored: Any,
) -> int:
    """Exact parameter count of ``RWKV6TimeMix``.

    ``5·H²`` (receptance, key, value, gate, output; no biases) ``+ 10·r·H`` (token-shift LoRA
    ``[H, 5r]`` and ``[5, r, H]``) ``+ 2·d·H`` (decay LoRA) ``+ 10·H`` (six ``time_maa``, the
    decay base, the bonus ``u`` and the GroupNorm weight and bias).
    """
    check_head_size(hidden_size, head_size)
    h = hidden_size
    r = _check_int("mix_rank", mix_rank)
    d = _check_int("decay_rank", decay_rank)
    return 5 * h * h + 2 * NUM_MIXES * r * h + 2 * d * h + 10 * h


def channel_mix_param_count(
    hidden_size: int, *, expand: float = 3.5, multiple_of: int = 32, **_ignored: Any
) -> int:
    """Exact parameter count of ``RWKV6ChannelMix``: ``H² + 2·F·H + 2·H`` with ``F`` from
    :func:`ffn_size` (key ``H→F``, value ``F→H``, receptance ``H→H``, two ``time_maa``)."""
    f = ffn_size(hidden_size, expand, multiple_of)
    return hidden_size * hidden_size + 2 * f * hidden_size + 2 * hidden_size


def param_count(hidden_size: int, **opts: Any) -> int:
    """Exact parameter count of the whole RWKV-6 block (time-mix + channel-mix bodies, without the
    core's pre-norms). Options as in the module docstring; unknown names raise ``TypeError``."""
    time_kw, chan_kw = split_options(opts)
    return time_mix_param_count(hidden_size, **time_kw) + channel_mix_param_count(
        hidden_size, **chan_kw
    )


def time_mix_state_size(hidden_size: int, *, head_size: int = 64, **_ignored: Any) -> int:
    """Step-mode state of ``RWKV6TimeMix`` per sequence: the previous token ``[H]`` and the WKV
    state ``[H/head_size, head_size, head_size]``, i.e. ``H + H·head_size`` elements."""
    heads = check_head_size(hidden_size, head_size)
    return hidden_size + heads * head_size * head_size


def channel_mix_state_size(hidden_size: int, **_ignored: Any) -> int:
    """Step-mode state of ``RWKV6ChannelMix`` per sequence: the previous token, ``H`` elements."""
    return _check_int("hidden_size", hidden_size)


def state_size(hidden_size: int, **opts: Any) -> int:
    """Elements of step-mode state per sequence for the whole block: ``2·H + H·head_size``."""
    time_kw, chan_kw = split_options(opts)
    return time_mix_state_size(hidden_size, **time_kw) + channel_mix_state_size(
        hidden_size, **chan_kw
    )

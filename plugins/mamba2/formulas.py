"""Closed formulas of the ``mamba2`` layer: widths, exact parameter count, step-state size, the
widths that a model of another width uses (no torch).

Widths, with ``H = hidden_size``: inner width ``I = expand_factor · H`` (a whole number), heads
``h = I / head_dim`` (a whole number, a multiple of ``num_groups``), convolved channels
``C = I + 2·G·N`` (x, then B and C of the G groups).
"""

from __future__ import annotations

import math
from fractions import Fraction
from typing import TYPE_CHECKING

import attrs

from hybridzoo.plugin import (
    LayerFlops,
    Notation,
    at_least,
    linear_flops,
    linear_param_count,
    whole_product,
)

if TYPE_CHECKING:  # pragma: no cover
    from hybridzoo_plugins.mamba2 import Mamba2Options

__all__ = [
    "NOTATIONS",
    "conv_channels",
    "flops",
    "hidden_size_multiple",
    "inner_width",
    "num_heads",
    "param_count",
    "scale_options",
    "state_size",
]


def inner_width(hidden_size: int, expand_factor: float) -> int:
    """``I = expand_factor · hidden_size``; a ``ValueError`` names both unless it is whole."""
    return whole_product(
        "hidden_size", hidden_size, "expand_factor", expand_factor, what="the inner width"
    )


def num_heads(inner: int, head_dim: int, num_groups: int) -> int:
    """``h = inner / head_dim``; a ``ValueError`` unless whole and a multiple of ``num_groups``."""
    at_least(1).check("head_dim", head_dim)
    at_least(1).check("num_groups", num_groups)
    if inner % head_dim:
        raise ValueError(
            f"head_dim={head_dim} must divide the inner width expand_factor · hidden_size = "
            f"{inner} (divisors up to 128: "
            f"{[d for d in range(1, min(inner, 128) + 1) if inner % d == 0]})"
        )
    heads = inner // head_dim
    if heads % num_groups:
        raise ValueError(
            f"num_groups={num_groups} must divide the number of heads "
            f"inner / head_dim = {inner} / {head_dim} = {heads}"
        )
    return heads


def conv_channels(inner: int, num_groups: int, state_size: int) -> int:
    """Channels of the causal convolution: ``C = I + 2·G·N`` (x, B and C)."""
    return inner + 2 * num_groups * state_size


def _widths(o: Mamba2Options, hidden_size: int) -> tuple[int, int, int]:
    inner = inner_width(hidden_size, o.expand_factor)
    return (
        inner,
        num_heads(inner, o.head_dim, o.num_groups),
        conv_channels(inner, o.num_groups, o.state_size),
    )


def param_count(o: Mamba2Options, hidden_size: int) -> int:
    """Exact parameters of one :class:`~hybridzoo_plugins.mamba2.layer.Mamba2Mixer`.

    - ``in_proj`` ``H → 2I + 2GN + h`` (z, x, B, C, dt), bias if ``bias``;
    - ``conv1d`` depthwise over ``C = I + 2GN`` channels: ``C·K`` (+ ``C`` if ``conv_bias``);
    - ``dt_bias``, ``A_log``, ``D``: ``h`` each;
    - ``norm.weight``: ``I``;
    - ``out_proj`` ``I → H``, bias if ``bias``.
    """
    inner, heads, channels = _widths(o, hidden_size)
    return (
        linear_param_count(hidden_size, inner + channels + heads, bias=o.bias)
        + channels * o.conv_size
        + (channels if o.conv_bias else 0)
        + 3 * heads
        + inner
        + linear_param_count(inner, hidden_size, bias=o.bias)
    )


def state_size(o: Mamba2Options, hidden_size: int) -> int:
    """Step-state elements per sequence: the convolution window ``C·(K-1)`` and the SSM state
    ``h·P·N`` (``= I·N``)."""
    inner, _, channels = _widths(o, hidden_size)
    return channels * (o.conv_size - 1) + inner * o.state_size


def hidden_size_multiple(o: Mamba2Options) -> int:
    """The hidden sizes that work are the multiples of this: ``expand_factor · H`` is whole and
    a multiple of ``head_dim · num_groups``.

    With ``expand_factor = p/q`` in lowest terms, ``H`` must be a multiple of
    ``q·P·G / gcd(p, q·P·G)``.
    """
    ratio = Fraction(o.expand_factor).limit_denominator(1_000_000)
    need = ratio.denominator * o.head_dim * o.num_groups
    return need // math.gcd(ratio.numerator, need)


def scale_options(
    o: Mamba2Options, hidden_size: int, *, seq_len: int | None = None
) -> Mamba2Options:
    """The options for a model of width ``hidden_size``: the inner width follows ``H`` through
    ``expand_factor``; the head width becomes ``gcd(I, head_dim)`` (64 wherever ``I`` is a
    multiple of 64, fewer channels on narrow models) and the groups ``gcd(num_groups, heads)``,
    so that every width whose inner width is whole is valid. The state size, the convolution and
    the chunk length do not depend on the width (``seq_len`` is not used). A width whose inner
    width is not whole leaves the options as they are (the count then says why)."""
    try:
        inner = inner_width(hidden_size, o.expand_factor)
    except ValueError:
        return o
    head_dim = math.gcd(inner, o.head_dim)
    return attrs.evolve(o, head_dim=head_dim, num_groups=math.gcd(o.num_groups, inner // head_dim))


def flops(o: Mamba2Options, hidden_size: int, seq_len: int) -> LayerFlops:
    """Forward FLOPs on ``seq_len`` positions. Matmul, per position: ``in_proj``
    ``H → 2I + 2GN + h`` and ``out_proj`` ``I → H``. Mixer, per position: the convolution
    ``2·C·K`` and the SSD recurrence in its step form, ``5·I·N`` (per state element: the decay,
    ``Δ·x ⊗ B``, the update and the readout ``h·C``); the skip, the gate and the gated norm are
    not counted. (The chunked kernel does more matrix work, growing with ``chunk_size``.)"""
    inner, heads, channels = _widths(o, hidden_size)
    per = linear_flops(hidden_size, inner + channels + heads) + linear_flops(inner, hidden_size)
    mixer = 2 * channels * o.conv_size + 5 * inner * o.state_size
    return LayerFlops(per * seq_len, mixer * seq_len)


#: How other projects write this layer (a Mamba-2 mixer).
NOTATIONS = (
    Notation("megatron", "M"),
    Notation("transformers", "linear_attention", models=("nemotron_h", "bamba")),
    Notation("transformers", "mamba", models=("nemotron_h", "bamba")),  # the legacy name
)

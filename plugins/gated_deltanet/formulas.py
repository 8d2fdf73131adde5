"""Closed formulas of the ``gated_deltanet`` layer: widths, exact parameter count, step-state
size, the widths that a model of another width uses (no torch).

Widths: ``h = num_heads`` query/key heads of ``dk = head_dim`` channels, ``hv = num_v_heads``
value heads (``num_heads`` when ``None``; a multiple of it, each query/key head then serving
``hv / h`` consecutive value heads) of ``dv = head_dim · expand_v`` channels; key width
``K = h·dk``, value width ``V = hv·dv``.
"""

from __future__ import annotations

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
    from hybridzoo_plugins.gated_deltanet import GatedDeltaNetOptions

__all__ = [
    "NOTATIONS",
    "flops",
    "param_count",
    "scale_options",
    "state_size",
    "value_head_dim",
    "value_heads",
]


def value_head_dim(head_dim: int, expand_v: float) -> int:
    """``dv = head_dim · expand_v``; a ``ValueError`` names both unless it is a whole number."""
    return whole_product(
        "head_dim", head_dim, "expand_v", expand_v, what="the value width per head"
    )


def value_heads(num_heads: int, num_v_heads: int | None) -> int:
    """``hv``: ``num_v_heads``, or ``num_heads`` when ``None``; a multiple of ``num_heads``."""
    at_least(1).check("num_heads", num_heads)
    if num_v_heads is None:
        return num_heads
    at_least(1).check("num_v_heads", num_v_heads)
    if num_v_heads % num_heads:
        raise ValueError(
            f"num_v_heads={num_v_heads} must be a multiple of num_heads={num_heads} (each "
            "query/key head serves num_v_heads / num_heads value heads)"
        )
    return num_v_heads


def _widths(o: GatedDeltaNetOptions) -> tuple[int, int, int, int]:
    """``(K, V, hv, dv)``."""
    hv = value_heads(o.num_heads, o.num_v_heads)
    dv = value_head_dim(o.head_dim, o.expand_v)
    return o.num_heads * o.head_dim, hv * dv, hv, dv


def param_count(o: GatedDeltaNetOptions, hidden_size: int) -> int:
    """Exact parameters of one :class:`~hybridzoo_plugins.gated_deltanet.layer.GatedDeltaNet`.

    No biases: ``q_proj``, ``k_proj`` ``H → K``; ``v_proj``, ``g_proj`` ``H → V``; ``a_proj``,
    ``b_proj`` ``H → hv``; the three convolutions ``(2K + V)·conv_size``; ``A_log``, ``dt_bias``
    ``hv`` each; ``o_norm.weight`` ``dv``; ``o_proj`` ``V → H``.
    """
    at_least(1).check("hidden_size", hidden_size)
    keys, values, hv, dv = _widths(o)
    return (
        hidden_size * (2 * keys + 2 * values + 2 * hv)
        + (2 * keys + values) * o.conv_size
        + 2 * hv
        + dv
        + linear_param_count(values, hidden_size, bias=False)
    )


def state_size(o: GatedDeltaNetOptions, hidden_size: int) -> int:
    """Step-state elements per sequence: the convolution windows ``(2K + V)·(conv_size - 1)`` and
    the delta-rule state ``hv·dk·dv``; neither depends on ``hidden_size``."""
    keys, values, hv, dv = _widths(o)
    return (2 * keys + values) * (o.conv_size - 1) + hv * o.head_dim * dv


def scale_options(
    o: GatedDeltaNetOptions, hidden_size: int, *, seq_len: int | None = None
) -> GatedDeltaNetOptions:
    """The options for a model of width ``hidden_size``: the heads split the width
    (``head_dim = hidden_size // num_heads``, at least 1), so the key width is about ``H`` and
    the value width ``expand_v · H`` as with the defaults at ``H = 256``; ``seq_len`` is not
    used."""
    return attrs.evolve(o, head_dim=max(1, hidden_size // o.num_heads))


def flops(o: GatedDeltaNetOptions, hidden_size: int, seq_len: int) -> LayerFlops:
    """Forward FLOPs on ``seq_len`` positions. Matmul, per position: the projections
    ``H → 2K + 2V + 2hv`` and ``o_proj`` ``V → H``. Mixer, per position: the convolutions
    ``2·(2K + V)·conv_size`` and the gated delta rule in its step form, ``7·hv·dk·dv`` (per
    state element: the decay, ``kᵀS``, the rank-one correction and its addition, the readout
    ``Sᵀq``); the norms and the gate are not counted."""
    keys, values, hv, dv = _widths(o)
    per = linear_flops(hidden_size, 2 * keys + 2 * values + 2 * hv)
    per += linear_flops(values, hidden_size)
    mixer = 2 * (2 * keys + values) * o.conv_size + 7 * hv * o.head_dim * dv
    return LayerFlops(per * seq_len, mixer * seq_len)


#: How other projects write this layer.
NOTATIONS = (
    Notation("megatron", "G"),
    Notation("transformers", "linear_attention", models=("qwen3_next",)),
)

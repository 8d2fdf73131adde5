"""Closed formulas for the Mamba-1 mixer, from its options record (no torch)."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from hybridzoo.plugin import LayerFlops, Notation, at_least, linear_flops, one_of, whole_product

if TYPE_CHECKING:  # pragma: no cover
    from hybridzoo_plugins.mamba import MambaOptions

__all__ = [
    "NOTATIONS",
    "flops",
    "intermediate_size",
    "param_count",
    "resolve_dt_rank",
    "state_size",
]

_DT_RANK = one_of("auto") | at_least(1)


def resolve_dt_rank(hidden_size: int, dt_rank: int | str = "auto") -> int:
    """Rank of the time-step projection: ``ceil(hidden_size / 16)`` for ``"auto"``, else itself."""
    at_least(1).check("hidden_size", hidden_size)
    if _DT_RANK.check("dt_rank", dt_rank) == "auto":
        return math.ceil(hidden_size / 16)
    return int(dt_rank)


def intermediate_size(hidden_size: int, expand_factor: int | float = 2) -> int:
    """Inner width ``I = expand_factor · hidden_size``; it must be a whole number >= 1."""
    return whole_product(
        "hidden_size", hidden_size, "expand_factor", expand_factor, what="the inner width"
    )


def param_count(o: MambaOptions, hidden_size: int) -> int:
    """Parameters of one :class:`~hybridzoo_plugins.mamba.layer.MambaMixer`.

    With ``H = hidden_size``, ``I = expand_factor·H``, ``N = state_size``, ``K = conv_size`` and
    ``R = dt_rank``: ``in_proj`` ``H → 2I``: ``2IH``; ``conv1d`` depthwise: ``IK`` (+ ``I`` with
    ``conv_bias``); ``x_proj`` ``I → R + 2N``: ``I(R + 2N)``; ``dt_proj`` ``R → I`` with bias:
    ``RI + I``; ``A_log`` ``IN`` and ``D`` ``I``; ``out_proj`` ``I → H``: ``IH``; with ``bias``,
    ``2I + H`` more.
    """
    inner, n = intermediate_size(hidden_size, o.expand_factor), o.state_size
    rank = resolve_dt_rank(hidden_size, o.dt_rank)
    count = 2 * inner * hidden_size  # in_proj
    count += inner * o.conv_size + (inner if o.conv_bias else 0)  # conv1d
    count += inner * (rank + 2 * n)  # x_proj
    count += rank * inner + inner  # dt_proj
    count += inner * n + inner  # A_log, D
    count += inner * hidden_size  # out_proj
    return count + (2 * inner + hidden_size if o.bias else 0)


def state_size(o: MambaOptions, hidden_size: int) -> int:
    """Step-mode state per sequence: the conv window ``I(K-1)`` plus the SSM state ``IN``."""
    inner = intermediate_size(hidden_size, o.expand_factor)
    return inner * (o.conv_size - 1) + inner * o.state_size


def flops(o: MambaOptions, hidden_size: int, seq_len: int) -> LayerFlops:
    """Forward FLOPs on ``seq_len`` positions. Matmul, per position: ``in_proj`` ``H → 2I``,
    ``x_proj`` ``I → R + 2N``, ``dt_proj`` ``R → I``, ``out_proj`` ``I → H``. Mixer, per
    position: the depthwise convolution ``2·I·K`` and the selective scan ``6·I·N`` (per state
    element: the decay ``Δ·A``, ``Δ·B·x``, the update ``Ā·h + ...`` and the readout ``C·h``);
    the skip ``D·x``, the gate and the exponentials are not counted."""
    H, n = hidden_size, o.state_size
    inner = intermediate_size(H, o.expand_factor)
    rank = resolve_dt_rank(H, o.dt_rank)
    per = linear_flops(H, 2 * inner) + linear_flops(inner, rank + 2 * n)
    per += linear_flops(rank, inner) + linear_flops(inner, H)
    return LayerFlops(per * seq_len, (2 * inner * o.conv_size + 6 * inner * n) * seq_len)


_JAMBA = "Jamba's Mamba mixer normalises dt, B and C with RMSNorms, which hybridzoo's has not"

#: How other projects write this layer: Jamba's Mamba mixer is Mamba-1 (Megatron's ``M`` and
#: the other models' Mamba layers are Mamba-2: the ``mamba2`` layer).
NOTATIONS = (
    Notation(
        "transformers",
        "linear_attention",
        models=("jamba",),
        note=_JAMBA,
    ),
    Notation("transformers", "mamba", models=("jamba",), note=_JAMBA),  # the legacy name
)

"""Closed formulas of the ``ffn`` layer (no torch): the exact parameter count."""

from __future__ import annotations

from typing import TYPE_CHECKING

from hybridzoo.plugin import (
    LayerFlops,
    Notation,
    feedforward_flops,
    feedforward_param_count,
    option_kwargs,
)

if TYPE_CHECKING:  # pragma: no cover
    from hybridzoo_plugins.ffn import FFNOptions


def param_count(o: FFNOptions, hidden_size: int) -> int:
    """``up`` ``H → I`` (``H → 2·I`` for SwiGLU) and ``down`` ``I → H``, biases if ``o.bias``:
    ``2·I·H`` weights (``3·I·H`` for SwiGLU), with ``I = o.inner_size or o.expand_factor·H``."""
    return feedforward_param_count(hidden_size, **option_kwargs(o))


def flops(o: FFNOptions, hidden_size: int, seq_len: int) -> LayerFlops:
    """Forward FLOPs on ``seq_len`` positions: two per weight of its matrices, per position."""
    per = feedforward_flops(hidden_size, **option_kwargs(o, exclude=["bias"]))
    return LayerFlops(per * seq_len)


#: How other projects write this layer: Megatron's MLP; transformers' ``mlp`` is a SwiGLU
#: without biases (Jamba, Bamba, Qwen3-Next), a squared-ReLU one in NemotronH.
NOTATIONS = (
    Notation("megatron", "-"),
    Notation(
        "transformers",
        "mlp",
        {"activation": "relu2", "bias": False},
        models=("nemotron_h",),
        role="dense",
    ),
    Notation("transformers", "mlp", {"activation": "swiglu", "bias": False}, role="dense"),
)

"""Closed formulas of the ``moe`` layer (no torch): parameters (all, and used per token) and
width scaling. (A positionwise layer has no state: the core counts none.)"""

from __future__ import annotations

from typing import TYPE_CHECKING

import attrs

from hybridzoo.plugin import LayerFlops, Notation, Setting, linear_flops

if TYPE_CHECKING:  # pragma: no cover
    from hybridzoo_plugins.moe import MoEOptions


def _shared(o: MoEOptions, hidden_size: int) -> int:
    """The shared SwiGLU expert ``3·S·H`` and its gate ``H`` (if any)."""
    return 3 * o.shared_expert_size * hidden_size + (hidden_size if o.shared_expert_gate else 0)


def param_count(o: MoEOptions, hidden_size: int) -> int:
    """Every parameter, no biases: the router ``E·H``, E SwiGLU experts of inner width ``I``
    (gate and up ``2·I·H``, down ``I·H``: ``3·I·H`` each), and the shared expert ``3·S·H``
    (plus ``H`` for its gate)."""
    experts = o.num_experts * 3 * o.expert_size * hidden_size
    return o.num_experts * hidden_size + experts + _shared(o, hidden_size)


def active_param_count(o: MoEOptions, hidden_size: int) -> int:
    """Parameters one token uses: the router, its ``top_k`` experts and the shared expert."""
    experts = o.top_k * 3 * o.expert_size * hidden_size
    return o.num_experts * hidden_size + experts + _shared(o, hidden_size)


def scale_options(o: MoEOptions, hidden_size: int, *, seq_len: int | None = None) -> MoEOptions:
    """Expert widths follow the model width: ``2·hidden_size`` (512 at the default width 256);
    a shared expert, when there is one, as well."""
    width = 2 * hidden_size
    return attrs.evolve(o, expert_size=width, shared_expert_size=o.shared_expert_size and width)


def flops(o: MoEOptions, hidden_size: int, seq_len: int) -> LayerFlops:
    """Forward FLOPs on ``seq_len`` positions, every token through its ``top_k`` experts (no
    token dropped): the router ``2·E·H``, ``top_k`` SwiGLU experts ``6·I·H`` each, the shared
    expert ``6·S·H`` and its gate ``2·H``, per position. Not counted: the routing itself, and
    the zero rows that pad an expert's block of fewer than 4 tokens (at most ``3·6·I·H`` per
    expert and forward: a tiny batch's cost)."""
    H = hidden_size
    per = linear_flops(H, o.num_experts) + o.top_k * 6 * o.expert_size * H
    per += 6 * o.shared_expert_size * H + (2 * H if o.shared_expert_gate else 0)
    return LayerFlops(per * seq_len)


_EXPERTS = {"router": "softmax", "num_experts": Setting("num_experts")}

#: How other projects write this layer (transformers: each model's own router).
NOTATIONS = (
    Notation("megatron", "E"),
    Notation(
        "transformers",
        "moe",
        {
            **_EXPERTS,
            "num_experts": Setting("num_experts", 16),
            "top_k": Setting("num_experts_per_tok", 2),
            "normalize_top_k": False,
            "shared_expert_size": 0,
        },
        models=("jamba",),
        role="sparse",
    ),
    Notation(
        "transformers",
        "moe",
        {
            **_EXPERTS,
            "num_experts": Setting("num_experts", 512),
            "top_k": Setting("num_experts_per_tok", 10),
            "normalize_top_k": Setting("norm_topk_prob", True),
            "expert_size": Setting("moe_intermediate_size", 512),
            "shared_expert_size": Setting("shared_expert_intermediate_size", 512),
            "shared_expert_gate": True,
        },
        models=("qwen3_next",),
        role="sparse",
    ),
    Notation(
        "transformers",
        "moe",
        {
            "router": "sigmoid",
            "num_experts": Setting("n_routed_experts", 8),
            "top_k": Setting("num_experts_per_tok", 2),
            "normalize_top_k": Setting("norm_topk_prob", True),
        },
        models=("nemotron_h",),
        role="sparse",
        note="NemotronH's experts are squared-ReLU MLPs routed with a score-correction bias, "
        "grouped top-k and a scaling factor, beside a shared expert; hybridzoo's moe has "
        "SwiGLU experts, plain top-k routing and a shared expert only if "
        "moe_shared_expert_size is set",
    ),
)

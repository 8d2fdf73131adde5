"""Weights from transformers' sparse-MoE blocks: Mixtral's (``MixtralSparseMoeBlock``) and
Qwen2-MoE's (``Qwen2MoeSparseMoeBlock``, with its gated shared expert).

transformers is not imported here: the functions read the blocks' tensors.
"""

from __future__ import annotations

from typing import Any

import torch

from hybridzoo.errors import PluginError
from hybridzoo_plugins.moe.layer import MixtureOfExperts


def options_from_block(block: Any) -> dict[str, Any]:
    """The ``moe_*`` options (flat, as :func:`hybridzoo.build` takes them) of a transformers
    Mixtral or Qwen2-MoE sparse block, from its shapes and router settings."""
    try:
        gate_up = block.experts.gate_up_proj
        router = block.gate
    except AttributeError as exc:
        raise PluginError(
            f"expected a transformers Mixtral or Qwen2-MoE sparse-MoE block (gate, experts."
            f"gate_up_proj), got {type(block).__name__}"
        ) from exc
    experts, inner2, _ = gate_up.shape
    options: dict[str, Any] = {
        "moe_num_experts": experts,
        "moe_top_k": router.top_k,
        "moe_expert_size": inner2 // 2,
        "moe_router": "softmax",
        "moe_normalize_top_k": getattr(router, "norm_topk_prob", True),
    }
    shared = getattr(block, "shared_expert", None)
    if shared is not None:
        options["moe_shared_expert_size"] = shared.gate_proj.weight.shape[0]
        options["moe_shared_expert_gate"] = getattr(block, "shared_expert_gate", None) is not None
    return options


def load_block(body: MixtureOfExperts, block: Any) -> MixtureOfExperts:
    """Copy a transformers sparse-MoE block's weights into ``body`` (same shapes); returns it."""
    with torch.no_grad():
        body.router.weight.copy_(block.gate.weight)
        body.gate_up.copy_(block.experts.gate_up_proj)
        body.down.copy_(block.experts.down_proj)
        shared = getattr(block, "shared_expert", None)
        if (shared is None) != (body.shared is None):
            raise PluginError("the block and the body disagree on having a shared expert")
        if shared is not None and body.shared is not None:
            up = torch.cat([shared.gate_proj.weight, shared.up_proj.weight])
            body.shared.up.weight.copy_(up)
            body.shared.down.weight.copy_(shared.down_proj.weight)
        if body.shared_gate is not None:
            body.shared_gate.weight.copy_(block.shared_expert_gate.weight)
    return body

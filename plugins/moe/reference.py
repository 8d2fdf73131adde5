"""The mixture of experts token by token from its weights (slow, obvious): each token's scores,
its top-k experts one after the other, the shared expert."""

from __future__ import annotations

import torch
from torch import Tensor

from hybridzoo_plugins.moe.layer import MixtureOfExperts


def _swiglu(x: Tensor, gate_up: Tensor, down: Tensor) -> Tensor:
    """``down · (silu(G x) ⊙ U x)`` for one token ``x [H]``, ``gate_up = [G; U]``."""
    h = gate_up @ x
    gate, up = h[: h.shape[0] // 2], h[h.shape[0] // 2 :]
    return down @ (gate * torch.sigmoid(gate) * up)


def reference_forward(body: MixtureOfExperts, x: Tensor) -> Tensor:
    """``body``'s output for ``x [B, L, H]``."""
    out = torch.zeros_like(x)
    for b in range(x.shape[0]):
        for t in range(x.shape[1]):
            token = x[b, t]
            logits = body.router.weight.to(token.dtype) @ token
            if body.router_kind == "softmax":
                scores = torch.exp(logits - logits.max())
                scores = scores / scores.sum()
            else:
                scores = 1.0 / (1.0 + torch.exp(-logits))
            values = scores.detach().tolist()
            chosen = sorted(range(body.num_experts), key=lambda e: -values[e])[: body.top_k]
            total = sum(scores[e] for e in chosen) if body.normalize_top_k else 1.0
            for e in chosen:
                out[b, t] += scores[e] / total * _swiglu(token, body.gate_up[e], body.down[e])
            if body.shared is not None:
                shared = _swiglu(token, body.shared.up.weight, body.shared.down.weight)
                if body.shared_gate is not None:
                    shared = shared / (1.0 + torch.exp(-(body.shared_gate.weight[0] @ token)))
                out[b, t] += shared
    return out

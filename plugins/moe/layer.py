"""A dropless mixture of SwiGLU experts, computed expert by expert.

For the ``N`` tokens of ``x [B, L, H]`` (flattened, ``x_n``):

- router logits ``z_n = W_r x_n`` (``[N, E]``, in float32 or better), scores
  ``s_n = softmax(z_n)`` or ``sigmoid(z_n)``; the ``k`` largest scores pick the experts
  ``e_n1..e_nk`` and weigh them, ``w_nj = s_n,e_nj`` (divided by ``Σ_j w_nj`` when
  ``normalize_top_k``);
- ``y_n = Σ_j w_nj · E_e_nj(x_n)`` with SwiGLU experts ``E_e(x) = D_e (silu(G_e x) ⊙ U_e x)``,
  plus a shared expert ``S(x_n)`` (scaled by ``sigmoid(w_s · x_n)`` with ``shared_expert_gate``).

No token is dropped (no capacity factor). The ``N·k`` (token, expert) assignments are sorted by
expert, each expert multiplies the contiguous block of its tokens' rows (one pair of matmuls per
expert, none for an expert with no token), and the results go back to their tokens by the
inverse permutation; every token sums its own ``k`` rows, so its output depends on it alone.
An expert's block of fewer than :data:`MIN_BLOCK` rows is zero-padded to that many: BLAS takes
another kernel for a matrix-vector-like product, whose rounding would make a token's output
depend (in the last bit) on how many other tokens share its expert, so that a NaN in a later
token, which routes it elsewhere, would move earlier outputs.

Auxiliary losses (training mode; read with :func:`hybridzoo.aux_losses`), each scaled by its
coefficient: ``load_balancing = E · Σ_e f_e P_e`` with ``f_e`` the fraction of tokens routed to
expert ``e`` (summing to ``k`` over the experts) and ``P_e`` the mean router probability of ``e``
(the softmax, or the sigmoid scores normalised per token), as Mixtral's
``load_balancing_loss_func`` of one layer; ``z_loss = mean_n logsumexp(z_n)²`` (ST-MoE).

Weight layout as transformers' Mixtral experts: ``gate_up [E, 2·I, H]`` (gate rows first) and
``down [E, H, I]``; the router ``router.weight [E, H]``.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from hybridzoo.losses import AuxLossRecorder
from hybridzoo.nn import FeedForward, Positionwise
from hybridzoo.nn.feedforward import activate
from hybridzoo.plugin import at_least, resolve_options
from hybridzoo_plugins.moe import MoEOptions

#: Expert blocks are at least this many rows (zero padding; see the module docstring).
MIN_BLOCK = 4


def _at_least_rows(block: Tensor) -> Tensor:
    """``block [n, H]`` zero-padded to :data:`MIN_BLOCK` rows when shorter."""
    short = block.shape[0] < MIN_BLOCK
    return F.pad(block, (0, 0, 0, MIN_BLOCK - block.shape[0])) if short else block


class MixtureOfExperts(Positionwise):
    """A dropless top-k mixture of SwiGLU experts (a body: no outer norm or residual).

    Args:
        hidden_size: model width ``H``.
        options: the layer's options record (fields and defaults documented there,
            ``hybridzoo layers`` lists them); default its defaults.
        **changes: any of its fields (``MixtureOfExperts(256, num_experts=4, top_k=1,
            normalize_top_k=False)``).

    Parameters: :func:`hybridzoo_plugins.moe.formulas.param_count` (per token:
    ``active_param_count``). Step mode is the forward of one position (no state).
    """

    def __init__(self, hidden_size: int, options: MoEOptions | None = None, **changes: Any) -> None:
        super().__init__()
        o = resolve_options(MoEOptions, options, changes)
        at_least(1).check("hidden_size", hidden_size)
        self.router_kind, self.normalize_top_k = o.router, o.normalize_top_k
        self.aux_loss_coef, self.z_loss_coef = float(o.aux_loss_coef), float(o.z_loss_coef)
        num_experts, expert_size = o.num_experts, o.expert_size
        shared_expert_size, shared_expert_gate = o.shared_expert_size, o.shared_expert_gate
        self.num_experts, self.top_k, self.expert_size = num_experts, o.top_k, expert_size
        self.router = nn.Linear(hidden_size, num_experts, bias=False)
        self.gate_up = nn.Parameter(torch.empty(num_experts, 2 * expert_size, hidden_size))
        self.down = nn.Parameter(torch.empty(num_experts, hidden_size, expert_size))
        self.shared: FeedForward | None = None
        self.shared_gate: nn.Linear | None = None
        if shared_expert_size:
            self.shared = FeedForward(
                hidden_size, activation="swiglu", bias=False, inner_size=shared_expert_size
            )
        if shared_expert_gate:
            self.shared_gate = nn.Linear(hidden_size, 1, bias=False)
        self.reset_expert_parameters()
        self._aux = AuxLossRecorder("moe")

    def reset_expert_parameters(self) -> None:
        """Each expert's matrices as ``nn.Linear`` initialises its weight:
        ``U(-1/√fan_in, 1/√fan_in)``."""
        with torch.no_grad():
            self.gate_up.uniform_(-(self.gate_up.shape[-1] ** -0.5), self.gate_up.shape[-1] ** -0.5)
            self.down.uniform_(-(self.down.shape[-1] ** -0.5), self.down.shape[-1] ** -0.5)

    # ------------------------------------------------------------------ routing
    def route(self, flat: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """For the tokens ``flat [N, H]``: router logits and scores ``[N, E]`` (in float32 or
        float64), top-k weights ``[N, k]`` (same dtype) and expert indices ``[N, k]``."""
        dtype = torch.promote_types(flat.dtype, torch.float32)
        logits = F.linear(flat.to(dtype), self.router.weight.to(dtype))
        scores = logits.softmax(-1) if self.router_kind == "softmax" else logits.sigmoid()
        weights, experts = scores.topk(self.top_k, dim=-1)
        if self.normalize_top_k:
            weights = weights / weights.sum(-1, keepdim=True)
        return logits, scores, weights, experts

    def _experts(self, flat: Tensor, weights: Tensor, experts: Tensor) -> tuple[Tensor, Tensor]:
        """``Σ_j w_nj E_e_nj(x_n)`` for every token ``[N, H]``, expert by expert, and the number
        of tokens of each expert ``[E]``."""
        k = experts.shape[1]
        assignment = experts.reshape(-1)  # [N·k], token n's j-th choice at n·k + j
        order = assignment.argsort(stable=True)  # the assignments grouped by expert
        counts = torch.bincount(assignment, minlength=self.num_experts)
        sizes = counts.tolist()
        token = order // k
        rows = flat.index_select(0, token)  # [N·k, H], in expert order
        scale = weights.reshape(-1, 1)[order].to(flat.dtype)
        tracked = (flat, self.gate_up, self.down)
        if torch.is_grad_enabled() and any(t.requires_grad for t in tracked):
            # unbind and split: their backward stacks and concatenates once
            gate_ups, downs = self.gate_up.unbind(0), self.down.unbind(0)
            outs = [
                F.linear(activate(F.linear(_at_least_rows(block), gate_ups[e]), "swiglu"), downs[e])
                for e, block in enumerate(torch.split(rows, sizes))
                if sizes[e]
            ]
            outs = [out[:n] for out, n in zip(outs, (n for n in sizes if n), strict=True)]
            weighted = torch.cat(outs) * scale  # [N·k, H]
        else:  # inference: the same products, in place, into one buffer
            weighted = torch.empty_like(rows)
            start = 0
            for e, n in enumerate(sizes):
                if n:
                    block = _at_least_rows(rows[start : start + n])
                    h = torch.mm(block, self.gate_up[e].t())  # [max(n, MIN_BLOCK), 2·I]
                    gate, up = h.chunk(2, dim=-1)
                    F.silu(gate, inplace=True).mul_(up)
                    if n < MIN_BLOCK:
                        weighted[start : start + n] = torch.mm(gate, self.down[e].t())[:n]
                    else:
                        torch.mm(gate, self.down[e].t(), out=weighted[start : start + n])
                    start += n
            weighted.mul_(scale)
        # each token sums its own k rows (in expert order, as Mixtral's block)
        return flat.new_zeros(flat.shape).index_add_(0, token, weighted), counts

    def _one_token(self, flat: Tensor, weights: Tensor, experts: Tensor) -> Tensor:
        """The inference path for one token ``flat [1, H]``: its ``k`` experts one after the
        other (no grouping to do), in the order of the grouped path."""
        chosen = sorted(zip(experts[0].tolist(), weights[0].tolist(), strict=True))
        out = torch.zeros_like(flat)
        for e, w in chosen:
            h = torch.mm(flat, self.gate_up[e].t())
            gate, up = h.chunk(2, dim=-1)
            F.silu(gate, inplace=True).mul_(up)
            out.add_(torch.mm(gate, self.down[e].t()), alpha=w)
        return out

    def forward(self, x: Tensor) -> Tensor:
        """``x [B, L, H] -> [B, L, H]``; in training mode also records the auxiliary losses."""
        flat = x.reshape(-1, x.shape[-1])
        if flat.shape[0] == 0:
            return torch.zeros_like(x)
        logits, scores, weights, experts = self.route(flat)
        tracked = torch.is_grad_enabled() and (flat.requires_grad or self.gate_up.requires_grad)
        if flat.shape[0] == 1 and not (tracked or self.training):
            y, counts = self._one_token(flat, weights, experts), None  # decoding at batch 1
        else:
            y, counts = self._experts(flat, weights, experts)
        if self.shared is not None:
            shared = self.shared(flat)
            if self.shared_gate is not None:
                shared = torch.sigmoid(self.shared_gate(flat)) * shared
            y = y + shared
        y = y.view(x.shape)
        if self.training and counts is not None:
            self._aux.record(self._losses(logits, scores, counts), output=y)
        else:
            self._aux.clear()
        return y

    # ------------------------------------------------------------------ auxiliary losses
    def _losses(self, logits: Tensor, scores: Tensor, counts: Tensor) -> dict[str, Tensor]:
        losses: dict[str, Tensor] = {}
        if self.aux_loss_coef:
            tokens = logits.shape[0]
            probs = scores if self.router_kind == "softmax" else scores / scores.sum(-1, True)
            fraction = counts.to(probs.dtype) / tokens  # f_e, summing to k
            balance = self.num_experts * (fraction * probs.mean(0)).sum()
            losses["load_balancing"] = self.aux_loss_coef * balance
        if self.z_loss_coef:
            losses["z_loss"] = self.z_loss_coef * logits.logsumexp(-1).square().mean()
        return losses

    def aux_losses(self) -> dict[str, Tensor]:
        """The auxiliary losses of the last training-mode forward (all its applications, for a
        shared body), scaled by their coefficients: ``load_balancing`` and ``z_loss`` (each
        when its coefficient is not 0). Empty after an eval-mode forward. See
        :mod:`hybridzoo.losses`."""
        return self._aux.read()

    def extra_repr(self) -> str:
        return (
            f"num_experts={self.num_experts}, top_k={self.top_k}, "
            f"expert_size={self.expert_size}, router={self.router_kind!r}"
        )


def make_bodies(o: MoEOptions, hidden_size: int) -> list[nn.Module]:
    """One :class:`MixtureOfExperts` body."""
    return [MixtureOfExperts(hidden_size, o)]

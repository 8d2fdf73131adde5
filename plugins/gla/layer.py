"""Gated Linear Attention (Yang et al., "Gated Linear Attention Transformers with
Hardware-Efficient Training", ICML 2024), as flash-linear-attention's GLA layer.

The body maps ``[B, L, H] -> [B, L, H]``:

- q, k ``H → heads·dk``, v ``H → heads·dv`` (``dv = head_dim``, ``dk = head_dim · expand_k``);
- a data-dependent, low-rank forget gate in log space,
  ``log α_t = logsigmoid(W₂ W₁ x_t + b₂) / gate_logit_normalizer`` (``H → r → heads·dk``);
- per head, the matrix state ``S_t = diag(α_t) S_{t-1} + k_tᵀ v_t`` and ``o_t = q_t S_t / √dk``
  (:func:`hybridzoo.ops.gla.chunk_gla`, chunkwise parallel; :func:`hybridzoo.ops.gla.gla_step`
  when decoding);
- a per-head RMSNorm on ``o`` (one weight of ``dv`` shared by the heads), a swish output gate
  ``o ⊙ silu(W_g x)`` and the output projection ``heads·dv → H``.

Decoding state: ``(S,)`` with ``S: [B, heads, dk, dv]`` (constant size, updated in place by step;
step mode is for inference, autograd does not go through the update).

Packed documents: ``forward(x, seq_idx=...)`` and ``prefill`` hand ``seq_idx [B, L]`` to
:func:`~hybridzoo.ops.gla.chunk_gla`, whose state restarts from zero at each document.
"""

from __future__ import annotations

from typing import Any

import torch.nn.functional as F
from torch import Tensor, nn

from hybridzoo.nn import FeedForward
from hybridzoo.nn.sequence_mixer import SequenceMixer
from hybridzoo.ops.gla import chunk_gla, gla_step
from hybridzoo.plugin import at_least, resolve_options
from hybridzoo_plugins.gla import GLAOptions
from hybridzoo_plugins.gla.formulas import key_width

__all__ = ["GatedLinearAttention", "State", "make_bodies"]

State = tuple[Tensor]


class GatedLinearAttention(SequenceMixer):
    """The GLA token mixer (a body: no outer norm or residual).

    Args:
        hidden_size: model width ``H``.
        options: the layer's options record (fields and defaults documented there,
            ``hybridzoo layers`` lists them); default its defaults.
        **changes: any of its fields (``GatedLinearAttention(256, num_heads=8)``).

    Keys are ``dk = head_dim · expand_k`` wide per head (with fla's ``expand_k=0.5``, 4 heads of
    64 and ``H = 256``: keys ``H/2``, values ``H``); the gate logits are divided by
    ``gate_logit_normalizer`` (16 as in fla: the forget gate starts close to 1). Parameter
    count: :func:`hybridzoo_plugins.gla.formulas.gla_param_count`. Weights use PyTorch's
    default ``nn.Linear`` initialisation, the RMSNorm weight starts at 1.
    """

    def __init__(self, hidden_size: int, options: GLAOptions | None = None, **changes: Any) -> None:
        super().__init__()
        o = resolve_options(GLAOptions, options, changes)
        self.hidden_size = at_least(1).check("hidden_size", hidden_size)
        self.num_heads, self.chunk_size = o.num_heads, o.chunk_size
        self.head_v_dim, self.head_k_dim = o.head_dim, key_width(o.head_dim, o.expand_k)
        self.gate_logit_normalizer = o.gate_logit_normalizer
        rank, keys = o.gate_low_rank_dim, o.num_heads * self.head_k_dim
        values = o.num_heads * o.head_dim
        self.q_proj = nn.Linear(hidden_size, keys, bias=False)
        self.k_proj = nn.Linear(hidden_size, keys, bias=False)
        self.v_proj = nn.Linear(hidden_size, values, bias=False)
        self.g_proj = nn.Linear(hidden_size, values, bias=False)
        self.gk_proj = nn.Sequential(
            nn.Linear(hidden_size, rank, bias=False), nn.Linear(rank, keys, bias=True)
        )
        self.g_norm = nn.RMSNorm(o.head_dim, eps=o.norm_eps)
        self.o_proj = nn.Linear(values, hidden_size, bias=False)

    def _inputs(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """q, k, log forget gate ``[..., heads, dk]`` and v ``[..., heads, dv]`` from ``x``."""
        lead = x.shape[:-1]
        nh, dk, dv = self.num_heads, self.head_k_dim, self.head_v_dim
        q = self.q_proj(x).view(*lead, nh, dk)
        k = self.k_proj(x).view(*lead, nh, dk)
        v = self.v_proj(x).view(*lead, nh, dv)
        log_alpha = F.logsigmoid(self.gk_proj(x)).view(*lead, nh, dk) / self.gate_logit_normalizer
        return q, k, v, log_alpha

    def _output(self, o: Tensor, x: Tensor) -> Tensor:
        """Norm, output gate, projection: ``o [..., heads, dv]``, ``x [..., H]`` → ``[..., H]``."""
        o = self.g_norm(o).flatten(-2)  # [..., heads·dv]
        return self.o_proj(o * F.silu(self.g_proj(x)))

    def init_state(self, batch_size: int) -> State:
        """``(S,)``, ``S = 0: [B, heads, dk, dv]`` on the module's device and dtype."""
        at_least(1).check("batch_size", batch_size)
        shape = (batch_size, self.num_heads, self.head_k_dim, self.head_v_dim)
        return (self.q_proj.weight.new_zeros(shape),)

    def _mix(
        self, x: Tensor, state: State | None, want_state: bool, seq_idx: Tensor | None
    ) -> tuple[Tensor, State | None]:
        """``forward``'s and ``prefill``'s work (see
        :class:`~hybridzoo.nn.sequence_mixer.SequenceMixer`)."""
        q, k, v, log_alpha = self._inputs(x)  # [B, L, heads, d]
        o, final = chunk_gla(
            q,
            k,
            v,
            log_alpha,
            initial_state=None if state is None else state[0],
            output_final_state=want_state,
            chunk_size=self.chunk_size,
            seq_idx=seq_idx,
        )
        return self._output(o, x), None if final is None else (final.to(x.dtype),)

    def step(self, x_t: Tensor, state: State) -> tuple[Tensor, State]:
        """One token ``x_t [B, H] -> y_t [B, H]``; the state tensor is updated in place."""
        q, k, v, log_alpha = self._inputs(x_t)  # [B, heads, d]
        o = gla_step(q, k, v, log_alpha, state[0])  # [B, heads, dv]
        return self._output(o, x_t), state


def make_bodies(o: GLAOptions, hidden_size: int) -> list[nn.Module]:
    """The gla layer's bodies: ``[GatedLinearAttention, FeedForward]`` (each its own residual)."""
    return [GatedLinearAttention(hidden_size, o), FeedForward(hidden_size, o.ffn_expand_factor)]

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

from typing import TYPE_CHECKING

import torch.nn.functional as F
from torch import Tensor, nn

from hybridzoo.nn import FeedForward
from hybridzoo.ops.gla import chunk_gla, gla_step
from hybridzoo.plugin import at_least, option_kwargs, positive, power_of_two
from hybridzoo_plugins.gla.formulas import key_width

if TYPE_CHECKING:  # pragma: no cover
    from hybridzoo_plugins.gla import GLAOptions

__all__ = ["GatedLinearAttention", "State", "make_bodies"]

State = tuple[Tensor]


class GatedLinearAttention(nn.Module):
    """The GLA token mixer (a body: no outer norm or residual).

    Args:
        hidden_size: model width ``H``.
        num_heads: number of heads.
        head_dim: value width per head ``dv`` (Edifice's ``gla_head_dim``, 64).
        expand_k: key width per head as a fraction of ``head_dim`` (``dk = head_dim·expand_k``,
            a whole number). 0.5 as in flash-linear-attention: with 4 heads of 64 and ``H = 256``,
            keys are ``H/2`` wide and values ``H`` wide (fla's ``expand_k=0.5, expand_v=1``).
        gate_low_rank_dim: rank ``r`` of the forget-gate projection ``H → r → heads·dk``.
        gate_logit_normalizer: divides ``logsigmoid`` of the gate logits (16 as in fla: the
            forget gate starts close to 1, ``α ≈ exp(-log 2 / 16) ≈ 0.96``).
        norm_eps: epsilon of the per-head RMSNorm.
        chunk_size: chunk length of the recurrence kernel (speed only; a power of two).

    Parameter count: :func:`hybridzoo_plugins.gla.formulas.gla_param_count`. Weights use
    PyTorch's default ``nn.Linear`` initialisation, the RMSNorm weight starts at 1.
    """

    def __init__(
        self,
        hidden_size: int,
        *,
        num_heads: int = 4,
        head_dim: int = 64,
        expand_k: float = 0.5,
        gate_low_rank_dim: int = 16,
        gate_logit_normalizer: float = 16.0,
        norm_eps: float = 1e-5,
        chunk_size: int = 64,
    ) -> None:
        super().__init__()
        self.hidden_size = at_least(1).check("hidden_size", hidden_size)
        self.num_heads = at_least(1).check("num_heads", num_heads)
        self.head_v_dim, self.head_k_dim = head_dim, key_width(head_dim, expand_k)
        self.gate_logit_normalizer = positive.check("gate_logit_normalizer", gate_logit_normalizer)
        self.chunk_size = power_of_two.check("chunk_size", chunk_size)
        rank = at_least(1).check("gate_low_rank_dim", gate_low_rank_dim)
        keys, values = num_heads * self.head_k_dim, num_heads * head_dim
        self.q_proj = nn.Linear(hidden_size, keys, bias=False)
        self.k_proj = nn.Linear(hidden_size, keys, bias=False)
        self.v_proj = nn.Linear(hidden_size, values, bias=False)
        self.g_proj = nn.Linear(hidden_size, values, bias=False)
        self.gk_proj = nn.Sequential(
            nn.Linear(hidden_size, rank, bias=False), nn.Linear(rank, keys, bias=True)
        )
        self.g_norm = nn.RMSNorm(head_dim, eps=positive.check("norm_eps", norm_eps))
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

    def forward(self, x: Tensor, *, seq_idx: Tensor | None = None) -> Tensor:
        """``[B, L, H] -> [B, L, H]`` from a zero state; ``seq_idx``: see :meth:`prefill`."""
        return self._mix(x, None, False, seq_idx)[0]

    def init_state(self, batch_size: int) -> State:
        """``(S,)``, ``S = 0: [B, heads, dk, dv]`` on the module's device and dtype."""
        at_least(1).check("batch_size", batch_size)
        shape = (batch_size, self.num_heads, self.head_k_dim, self.head_v_dim)
        return (self.q_proj.weight.new_zeros(shape),)

    def prefill(
        self, x: Tensor, state: State | None = None, *, seq_idx: Tensor | None = None
    ) -> tuple[Tensor, State]:
        """``y [B, L, H]`` from ``state`` (None = zeros) and the state after the last position.

        ``seq_idx [B, L]`` (integers, non-decreasing along L) packs documents in a row: each
        starts from a zero state, as if it ran alone; the given state belongs to a row's first
        document, the returned one to its last.
        """
        y, final = self._mix(x, state, True, seq_idx)
        return y, (final,)

    def _mix(
        self, x: Tensor, state: State | None, want_state: bool, seq_idx: Tensor | None
    ) -> tuple[Tensor, Tensor | None]:
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
        return self._output(o, x), None if final is None else final.to(x.dtype)

    def step(self, x_t: Tensor, state: State) -> tuple[Tensor, State]:
        """One token ``x_t [B, H] -> y_t [B, H]``; the state tensor is updated in place."""
        q, k, v, log_alpha = self._inputs(x_t)  # [B, heads, d]
        o = gla_step(q, k, v, log_alpha, state[0])  # [B, heads, dv]
        return self._output(o, x_t), state


def make_bodies(o: GLAOptions, hidden_size: int) -> list[nn.Module]:
    """The gla layer's bodies: ``[GatedLinearAttention, FeedForward]`` (each its own residual)."""
    mixer = GatedLinearAttention(hidden_size, **option_kwargs(o, exclude=["ffn_expand_factor"]))
    ffn_expand = at_least(1).check("ffn_expand_factor", o.ffn_expand_factor)
    return [mixer, FeedForward(hidden_size, ffn_expand)]

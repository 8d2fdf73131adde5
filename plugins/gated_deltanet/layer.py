"""Gated DeltaNet (Yang, Kautz & Hatamizadeh, ICLR 2025), as flash-linear-attention's
``GatedDeltaNet`` layer and Qwen3-Next's linear-attention layer; a body ``[B, L, H] -> [B, L, H]``::

    q, k = l2norm(silu(conv(q_proj u))), l2norm(silu(conv(k_proj u)))   # [B, L, h, dk]
    v    = silu(conv(v_proj u))                                          # [B, L, hv, dv]
    β_t  = sigmoid(b_proj u_t)                                           # [B, L, hv]
    g_t  = -exp(A_log) · softplus(a_proj u_t + dt_bias)                  # log decay, [B, L, hv]
    S_t  = exp(g_t) (I - β_t k_t k_tᵀ) S_{t-1} + β_t k_t v_tᵀ             # per head [dk, dv]
    o_t  = dk^-½ · S_tᵀ q_t                                              # [B, L, hv, dv]
    out  = o_proj(rms_norm(o_t) · w ⊙ silu(g_proj u_t))                  # RMS per head

State orientation: ``S [B, hv, dk, dv]`` maps keys to values, so ``S_tᵀ q_t`` reads the value
stored under ``q_t``, and the update writes ``v_t`` under ``k_t`` after removing ``β_t`` of what
was stored there (``S_{t-1}ᵀ k_t``): fla's and transformers' layout. With ``num_v_heads >
num_heads`` each query/key head serves ``hv / h`` consecutive value heads (Qwen3-Next's grouped
value heads). The recurrence runs in :func:`hybridzoo.ops.chunk_gated_delta_rule` (chunkwise,
WY form) and :func:`hybridzoo.ops.gated_delta_rule_step` (decoding).

Parameter names are fla's (``q_proj``, ``k_proj``, ``v_proj``, ``a_proj``, ``b_proj``,
``g_proj``, ``q_conv1d``, ``k_conv1d``, ``v_conv1d``, ``A_log``, ``dt_bias``, ``o_norm``,
``o_proj``). Step-mode state: ``(window [B, 2K + V, c-1], S [B, hv, dk, dv])``: the last ``c-1``
inputs of the q, k and v convolutions (kernel ``c``) and the delta-rule state.
"""

from __future__ import annotations

from typing import Any, cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from hybridzoo.nn.gated_norm import GatedRMSNorm
from hybridzoo.nn.init import log_uniform_, time_step_bias_
from hybridzoo.nn.options_body import OptionsBody
from hybridzoo.nn.sequence_mixer import SequenceMixer
from hybridzoo.nn.short_conv import ShortConvolution, conv_step
from hybridzoo.nn.step_cache import DerivedTensors
from hybridzoo.ops import chunk_gated_delta_rule, gated_delta_rule_step
from hybridzoo.plugin import at_least
from hybridzoo_plugins.gated_deltanet import GatedDeltaNetOptions
from hybridzoo_plugins.gated_deltanet.formulas import value_head_dim, value_heads

__all__ = ["GatedDeltaNet", "GatedDeltaNetState", "make_bodies"]

GatedDeltaNetState = tuple[Tensor, Tensor]
"""``(window [B, 2K + V, c-1], S [B, hv, dk, dv])``: the convolutions' last inputs (q, k, v
channels, as Qwen3-Next's conv cache) and the delta-rule state."""

#: initial decay rates ``A = U(0.01, 16)`` per head (Qwen3-Next's range: fla's, kept off 0)
A_INIT_RANGE = (0.01, 16.0)
#: initial time steps, log-uniform, as fla: ``(dt_min, dt_max, dt_init_floor)``
DT_INIT = (0.001, 0.1, 1e-4)
#: epsilon of the L2 normalisation of q and k (fla's and transformers')
L2_EPS = 1e-6


def l2_normalize(x: Tensor) -> Tensor:
    """``x / sqrt(Σ x² + 1e-6)`` over the last dimension."""
    return x * torch.rsqrt(x.square().sum(-1, keepdim=True) + L2_EPS)


class GatedDeltaNet(OptionsBody[GatedDeltaNetOptions], SequenceMixer):
    """The Gated DeltaNet token mixer (a body: no outer norm or residual).

    Args:
        hidden_size: model width ``H``.
        options: the layer's options record (fields and defaults documented there,
            ``hybridzoo layers`` lists them); default its defaults. Widths: ``num_heads``
            query/key heads of ``dk = head_dim``, ``num_v_heads`` value heads of
            ``dv = head_dim · expand_v``.
        device, dtype: where and how to create the parameters.
        **changes: any of its fields (``GatedDeltaNet(256, num_heads=2, num_v_heads=4)``).

    Initialisation as fla: ``A_log = log U(0.01, 16)``, ``dt_bias = softplus⁻¹(dt)`` with
    ``dt`` log-uniform in ``[0.001, 0.1]`` (at least 1e-4), PyTorch's defaults for the
    projections and convolutions, the norm weight 1. ``A_log`` and ``dt_bias`` carry
    ``_no_weight_decay = True``.
    """

    Options = GatedDeltaNetOptions

    def build(self, hidden_size: int, o: GatedDeltaNetOptions, fk: dict[str, Any]) -> None:
        self.hidden_size = at_least(1).check("hidden_size", hidden_size)
        num_heads, head_dim, conv_size = o.num_heads, o.head_dim, o.conv_size
        self.num_v_heads = value_heads(num_heads, o.num_v_heads)
        self.num_heads, self.head_k_dim = num_heads, head_dim
        self.head_v_dim = value_head_dim(head_dim, o.expand_v)
        self.chunk_size = o.chunk_size
        self.key_dim = num_heads * head_dim
        self.value_dim = self.num_v_heads * self.head_v_dim
        keys, values, hv = self.key_dim, self.value_dim, self.num_v_heads

        self.q_proj = nn.Linear(hidden_size, keys, bias=False, **fk)
        self.k_proj = nn.Linear(hidden_size, keys, bias=False, **fk)
        self.v_proj = nn.Linear(hidden_size, values, bias=False, **fk)
        self.a_proj = nn.Linear(hidden_size, hv, bias=False, **fk)
        self.b_proj = nn.Linear(hidden_size, hv, bias=False, **fk)
        self.g_proj = nn.Linear(hidden_size, values, bias=False, **fk)
        self.q_conv1d = ShortConvolution(keys, conv_size, **fk)
        self.k_conv1d = ShortConvolution(keys, conv_size, **fk)
        self.v_conv1d = ShortConvolution(values, conv_size, **fk)
        self.A_log = nn.Parameter(torch.empty(hv, **fk))
        self.dt_bias = nn.Parameter(torch.empty(hv, **fk))
        self.o_norm = GatedRMSNorm(self.head_v_dim, eps=o.norm_eps, norm_before_gate=True, **fk)
        self.o_proj = nn.Linear(values, hidden_size, bias=False, **fk)
        for p in (self.A_log, self.dt_bias):
            p._no_weight_decay = True  # type: ignore[attr-defined]
        self._derived = DerivedTensors()  # step mode's fused weights
        self.reset_decay_parameters()

    @torch.no_grad()
    def reset_decay_parameters(self) -> None:
        """The decay initialisation: ``A_log`` and ``dt_bias`` (see the class docstring)."""
        log_uniform_(self.A_log, *A_INIT_RANGE)
        time_step_bias_(self.dt_bias, *DT_INIT)

    def extra_repr(self) -> str:
        return (
            f"hidden_size={self.hidden_size}, num_heads={self.num_heads}, "
            f"num_v_heads={self.num_v_heads}, head_k_dim={self.head_k_dim}, "
            f"head_v_dim={self.head_v_dim}"
        )

    # -- shared by both modes -----------------------------------------------------------------

    def _heads(self, q: Tensor, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Split the convolved ``[..., K|K|V]`` into heads, q and k L2-normalised (the kernels
        let each query/key head serve its ``hv / h`` value heads)."""
        q = l2_normalize(q.unflatten(-1, (self.num_heads, self.head_k_dim)))
        k = l2_normalize(k.unflatten(-1, (self.num_heads, self.head_k_dim)))
        return q, k, v.unflatten(-1, (self.num_v_heads, self.head_v_dim))

    def _log_decay(self, a: Tensor) -> Tensor:
        """``g = -exp(A_log) · softplus(a + dt_bias)``, ``[..., hv]``."""
        A = self._derived.get("A", (self.A_log,), lambda: -torch.exp(self.A_log))
        return A * F.softplus(a + self.dt_bias)

    def _output(self, o: Tensor, gate: Tensor) -> Tensor:
        """``o_proj(rms_norm(o) · w ⊙ silu(gate))``: ``o [..., hv, dv]``, ``gate [..., V]``."""
        gate = gate.unflatten(-1, (self.num_v_heads, self.head_v_dim))
        return self.o_proj(self.o_norm(o, gate).flatten(-2))

    # -- sequence mode ------------------------------------------------------------------------

    def _mix(
        self, u: Tensor, state: GatedDeltaNetState | None, want_state: bool, seq_idx: Tensor | None
    ) -> tuple[Tensor, GatedDeltaNetState | None]:
        widths = [self.key_dim, self.key_dim, self.value_dim]
        windows = [None] * 3 if state is None else state[0].split(widths, dim=1)
        convs = (self.q_conv1d, self.k_conv1d, self.v_conv1d)
        projs = (self.q_proj, self.k_proj, self.v_proj)
        conv_out = [
            conv(proj(u), window, output_final_window=want_state, seq_idx=seq_idx)
            for conv, proj, window in zip(convs, projs, windows, strict=True)
        ]
        q, k, v = self._heads(*(y for y, _ in conv_out))
        o, final = chunk_gated_delta_rule(
            q,
            k,
            v,
            self._log_decay(self.a_proj(u)),
            torch.sigmoid(self.b_proj(u)),
            initial_state=None if state is None else state[1],
            output_final_state=want_state,
            chunk_size=self.chunk_size,
            seq_idx=seq_idx,
        )
        out = self._output(o, self.g_proj(u))
        if not want_state:
            return out, None
        window = torch.cat([cast(Tensor, w) for _, w in conv_out], dim=1)
        return out, (window, cast(Tensor, final).to(u.dtype))

    # -- step mode ----------------------------------------------------------------------------

    def init_state(self, batch_size: int) -> GatedDeltaNetState:
        """The zero state ``(window [B, 2K + V, c-1], S [B, hv, dk, dv])`` in the module's
        device and dtype."""
        at_least(0).check("batch_size", batch_size)
        s = self.A_log.new_zeros(batch_size, self.num_v_heads, self.head_k_dim, self.head_v_dim)
        size = self.q_conv1d.kernel_size - 1
        return s.new_zeros(batch_size, 2 * self.key_dim + self.value_dim, size), s

    def _step_weights(self) -> tuple[Tensor, Tensor]:
        """The six projections as one ``[2K + V + 2hv + V, H]`` weight (q, k, v, a, b, g) and the
        three convolutions as one ``[2K + V, c]`` kernel, cached for step mode."""
        projs = (self.q_proj, self.k_proj, self.v_proj, self.a_proj, self.b_proj, self.g_proj)
        convs = (self.q_conv1d, self.k_conv1d, self.v_conv1d)
        proj_w = [p.weight for p in projs]
        conv_w = [c.weight for c in convs]
        return (
            self._derived.get("proj", proj_w, lambda: torch.cat(proj_w)),
            self._derived.get("conv", conv_w, lambda: torch.cat(conv_w).squeeze(1)),
        )

    def step(self, x_t: Tensor, state: GatedDeltaNetState) -> tuple[Tensor, GatedDeltaNetState]:
        """One position ``x_t [B, H] -> y_t [B, H]``; updates ``state`` in place and returns it.

        Inference only: autograd does not go through the in-place update.
        """
        window, s = state
        proj_w, conv_w = self._step_weights()
        hv, keys, values = self.num_v_heads, self.key_dim, self.value_dim
        qkv, a, b, gate = F.linear(x_t, proj_w).split([2 * keys + values, hv, hv, values], -1)
        q, k, v = self._heads(
            *conv_step(qkv, window, conv_w, None, "silu").split([keys, keys, values], -1)
        )
        o = gated_delta_rule_step(q, k, v, self._log_decay(a), torch.sigmoid(b), s)
        return self._output(o, gate), state


def make_bodies(o: GatedDeltaNetOptions, hidden_size: int) -> GatedDeltaNet:
    """The gated_deltanet layer's body: one :class:`GatedDeltaNet`."""
    return GatedDeltaNet(hidden_size, o)

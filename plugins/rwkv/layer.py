"""RWKV-6 "Finch" bodies (Peng et al., 2024, "Eagle and Finch", arXiv:2404.05892).

An ``rwkv`` block is two sub-blocks, each wrapped by the core in its own pre-norm residual:
:class:`RWKV6TimeMix` (the sequence mixer) then :class:`RWKV6ChannelMix` (the feed-forward).

Time-mixing, for the token ``x_t`` and the previous one ``x_{t-1}`` (``Δ_t = x_{t-1} - x_t``)::

    m_t            = tanh((x_t + Δ_t ⊙ μ_x) W1) W2                # 5 LoRA outputs, "ddlerp"
    x^□_t          = x_t + Δ_t ⊙ (μ_□ + m^□_t)                    # □ ∈ {w, k, v, r, g}
    r, k, v, g     = x^r W_r, x^k W_k, x^v W_v, silu(x^g W_g)
    w_t            = time_decay + tanh(x^w D1) D2;  decay_t = exp(-exp(w_t)) ∈ (0, 1)
    o_t            = r_t (S_{t-1} + diag(u) k_tᵀ v_t)             # per head, S: [hs, hs]
    S_t            = diag(decay_t) S_{t-1} + k_tᵀ v_t
    y_t            = W_o (GroupNorm_heads(o_t) ⊙ g_t)

Channel-mixing: ``y_t = σ(x^r_t W_r) ⊙ (relu(x^k_t W_k)² W_v)`` with static token-shift
interpolations ``x^□_t = x_t + Δ_t ⊙ μ_□``.

Parameter names and shapes follow BlinkDL's RWKV-LM (``RWKV_Tmix_x060`` / ``RWKV_CMix_x060``) so
that a block's ``att.*`` / ``ffn.*`` weights load with ``load_state_dict``.

The WKV recurrence runs in :func:`hybridzoo.ops.gla.chunk_gla` (chunked, parallel over time) and
:func:`hybridzoo.ops.gla.gla_step` (one token) with ``scale=1`` and ``bonus=u``.

Packed documents (``forward(x, seq_idx=...)``, ``prefill``): at a document's start the token
shift of both bodies reads zeros instead of the previous document's last token, and the WKV state
restarts from zero (``seq_idx`` goes to the kernel).

Initialisation follows RWKV-LM with one depth-dependent knob, ``init_depth`` (RWKV-LM's
``layer_id / n_layer``; a body does not know its position in the stack, so 0.5 by default):
``time_maa_*`` ramps over channels, ``time_decay`` from -6 to -1, the zig-zag bonus ``time_faaaa``,
LoRA ``W2``/``D2`` uniform in ±0.01, orthogonal projections (gain 1 for receptance and value, 0.1
for key and gate). Where RWKV-LM starts from zeros (the LoRA ``W1``/``D1``, the time-mix output and
the channel-mix value and receptance), we use small values instead (uniform ±0.01, orthogonal gain
0.1) so that every parameter receives a gradient from the first step; the GroupNorm starts at
weight 1, bias 0.
"""

from __future__ import annotations

from typing import Any, cast

import torch
import torch.nn.functional as F
from torch import nn

from hybridzoo.nn.options_body import OptionsBody
from hybridzoo.nn.sequence_mixer import SequenceMixer
from hybridzoo.ops import gla as gla_ops
from hybridzoo.plugin import at_least, in_range
from hybridzoo_plugins.rwkv import RWKVOptions
from hybridzoo_plugins.rwkv.formulas import NUM_MIXES, check_head_size, ffn_size

__all__ = ["RWKV6ChannelMix", "RWKV6TimeMix", "make_bodies"]

TimeMixState = tuple[torch.Tensor, torch.Tensor]
ChannelMixState = tuple[torch.Tensor]
_DEPTH = in_range(0.0, 1.0)  # init_depth


def _shifted(
    x: torch.Tensor, prev: torch.Tensor, seq_idx: torch.Tensor | None = None
) -> torch.Tensor:
    """``x_{t-1}`` for every t: ``prev`` [B, H] then ``x[:, :-1]``; [B, L, H]. With ``seq_idx
    [B, L]``, zeros where a packed document starts (selected, so nothing crosses)."""
    earlier = x[:, :-1]
    if seq_idx is not None:
        earlier = earlier.masked_fill((seq_idx[:, 1:] != seq_idx[:, :-1]).unsqueeze(-1), 0.0)
    return torch.cat([prev.unsqueeze(1), earlier], dim=1)


class RWKV6TimeMix(OptionsBody[RWKVOptions], SequenceMixer):
    """RWKV-6 time-mixing body: ``[B, L, H] -> [B, L, H]``.

    Args:
        hidden_size: model width ``H``; must be a multiple of ``head_size``.
        options: the layer's options record (fields and defaults documented there,
            ``hybridzoo layers`` lists them); default its defaults. This body reads
            ``head_size``, ``mix_rank`` (``time_maa_w1 [H, 5·r]``, ``time_maa_w2 [5, r, H]``),
            ``decay_rank`` (``time_decay_w1 [H, d]``, ``time_decay_w2 [d, H]``),
            ``head_size_divisor`` (GroupNorm ``eps = 1e-5 · divisor²``, as RWKV-LM),
            ``init_depth`` and ``chunk_size``.
        device, dtype: where and how to create the parameters.
        **changes: any of its fields (``RWKV6TimeMix(256, head_size=32)``).

    State (step mode): ``(shift [B, H], wkv [B, H/head_size, head_size, head_size])``.
    """

    Options = RWKVOptions

    def build(self, hidden_size: int, o: RWKVOptions, fk: dict[str, Any]) -> None:
        self.num_heads = check_head_size(hidden_size, o.head_size)
        self.hidden_size, self.head_size = hidden_size, o.head_size
        self.mix_rank, self.decay_rank = o.mix_rank, o.decay_rank
        self.chunk_size, self.head_size_divisor = o.chunk_size, o.head_size_divisor
        depth, head_size, head_size_divisor = o.init_depth, o.head_size, o.head_size_divisor
        h, r, d = hidden_size, self.mix_rank, self.decay_rank

        # token-shift interpolation: static μ and the data-dependent LoRA ("ddlerp")
        self.time_maa_x = nn.Parameter(torch.empty(1, 1, h, **fk))
        self.time_maa_w = nn.Parameter(torch.empty(1, 1, h, **fk))
        self.time_maa_k = nn.Parameter(torch.empty(1, 1, h, **fk))
        self.time_maa_v = nn.Parameter(torch.empty(1, 1, h, **fk))
        self.time_maa_r = nn.Parameter(torch.empty(1, 1, h, **fk))
        self.time_maa_g = nn.Parameter(torch.empty(1, 1, h, **fk))
        self.time_maa_w1 = nn.Parameter(torch.empty(h, NUM_MIXES * r, **fk))
        self.time_maa_w2 = nn.Parameter(torch.empty(NUM_MIXES, r, h, **fk))
        # data-dependent decay: w_t = time_decay + tanh(x^w D1) D2
        self.time_decay = nn.Parameter(torch.empty(1, 1, h, **fk))
        self.time_decay_w1 = nn.Parameter(torch.empty(h, d, **fk))
        self.time_decay_w2 = nn.Parameter(torch.empty(d, h, **fk))
        # bonus u for the current token
        self.time_faaaa = nn.Parameter(torch.empty(self.num_heads, head_size, **fk))

        self.receptance = nn.Linear(h, h, bias=False, **fk)
        self.key = nn.Linear(h, h, bias=False, **fk)
        self.value = nn.Linear(h, h, bias=False, **fk)
        self.gate = nn.Linear(h, h, bias=False, **fk)
        self.output = nn.Linear(h, h, bias=False, **fk)
        self.ln_x = nn.GroupNorm(self.num_heads, h, eps=1e-5 * head_size_divisor**2, **fk)
        self.reset_parameters(depth)

    @torch.no_grad()
    def reset_parameters(self, init_depth: float = 0.5) -> None:
        """RWKV-LM's initial values for a layer at relative depth ``init_depth`` (module doc)."""
        depth = _DEPTH.check("init_depth", init_depth)
        h = self.hidden_size
        ratio_0_to_1 = depth
        ratio_1_to_0 = 1.0 - depth
        ramp = torch.arange(h, dtype=torch.float64) / h  # [H], 0 .. (H-1)/H
        ramp = ramp.view(1, 1, h)
        self.time_maa_x.copy_(1.0 - ramp.pow(ratio_1_to_0))
        self.time_maa_w.copy_(1.0 - ramp.pow(ratio_1_to_0))
        self.time_maa_k.copy_(1.0 - ramp.pow(ratio_1_to_0))
        self.time_maa_v.copy_(1.0 - (ramp.pow(ratio_1_to_0) + 0.3 * ratio_0_to_1))
        self.time_maa_r.copy_(1.0 - ramp.pow(0.5 * ratio_1_to_0))
        self.time_maa_g.copy_(1.0 - ramp.pow(0.5 * ratio_1_to_0))
        nn.init.uniform_(self.time_maa_w1, -0.01, 0.01)
        nn.init.uniform_(self.time_maa_w2, -0.01, 0.01)

        n = torch.arange(h, dtype=torch.float64) / max(h - 1, 1)  # [H], 0 .. 1
        self.time_decay.copy_((-6.0 + 5.0 * n.pow(0.7 + 1.3 * ratio_0_to_1)).view(1, 1, h))
        nn.init.uniform_(self.time_decay_w1, -0.01, 0.01)
        nn.init.uniform_(self.time_decay_w2, -0.01, 0.01)
        zigzag = ((torch.arange(h) + 1) % 3 - 1).to(torch.float64) * 0.1
        bonus = ratio_0_to_1 * (1.0 - n) + zigzag
        self.time_faaaa.copy_(bonus.view(self.num_heads, self.head_size))

        nn.init.orthogonal_(self.receptance.weight, gain=1.0)
        nn.init.orthogonal_(self.key.weight, gain=0.1)
        nn.init.orthogonal_(self.value.weight, gain=1.0)
        nn.init.orthogonal_(self.gate.weight, gain=0.1)
        nn.init.orthogonal_(self.output.weight, gain=0.1)
        self.ln_x.reset_parameters()

    # -- shared maths ---------------------------------------------------------------------------

    def _project(
        self, x: torch.Tensor, x_prev: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """From ``x``, ``x_prev`` [B, L, H] to r, k, v, log_decay [B, L, nh, hs] and g [B, L, H]."""
        b, length, h = x.shape
        dx = x_prev - x  # [B, L, H]
        base = torch.addcmul(x, dx, self.time_maa_x)
        lora = torch.tanh(base @ self.time_maa_w1)  # [B, L, 5r]
        lora = lora.view(b * length, NUM_MIXES, self.mix_rank).transpose(0, 1)  # [5, BL, r]
        mu = torch.cat(
            [self.time_maa_w, self.time_maa_k, self.time_maa_v, self.time_maa_r, self.time_maa_g]
        ).view(NUM_MIXES, 1, h)
        mixes = torch.baddbmm(mu, lora, self.time_maa_w2)  # μ_□ + m^□: [5, BL, H]
        xs = torch.addcmul(x.reshape(1, -1, h), dx.reshape(1, -1, h), mixes)  # [5, BL, H]
        xw, xk, xv, xr, xg = xs.unbind(0)  # each [BL, H]

        heads = (b, length, self.num_heads, self.head_size)
        r = self.receptance(xr).view(heads)
        k = self.key(xk).view(heads)
        v = self.value(xv).view(heads)
        g = F.silu(self.gate(xg)).view(b, length, h)
        w = torch.addmm(
            self.time_decay.view(1, h), torch.tanh(xw @ self.time_decay_w1), self.time_decay_w2
        )  # [BL, H]
        log_decay = -torch.exp(w).view(heads)  # log of the decay, < 0
        return r, k, v, g, log_decay

    def _finish(self, o: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        """Norm over heads, gate, output projection: o [..., nh, hs], g [..., H] -> [..., H]."""
        shape = g.shape
        o = self.ln_x(o.reshape(-1, self.hidden_size)).view(shape)  # [..., H]
        return self.output(o * g)

    def _run(
        self,
        x: torch.Tensor,
        shift: torch.Tensor,
        wkv: torch.Tensor | None,
        want_state: bool,
        seq_idx: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        r, k, v, g, log_decay = self._project(x, _shifted(x, shift, seq_idx))
        o, final = gla_ops.chunk_gla(
            r,
            k,
            v,
            log_decay,
            scale=1.0,
            bonus=self.time_faaaa,
            initial_state=wkv,
            output_final_state=want_state,
            chunk_size=self.chunk_size,
            seq_idx=seq_idx,
        )  # o: [B, L, nh, hs]
        return self._finish(o, g), final

    # -- body protocol --------------------------------------------------------------------------

    def init_state(self, batch_size: int) -> TimeMixState:
        """Zero state: ``(shift [B, H], wkv [B, nh, hs, hs])`` on the module's device and dtype."""
        p = self.receptance.weight
        shift = p.new_zeros(batch_size, self.hidden_size)
        wkv = p.new_zeros(batch_size, self.num_heads, self.head_size, self.head_size)
        return shift, wkv

    def _mix(
        self,
        x: torch.Tensor,
        state: TimeMixState | None,
        want_state: bool,
        seq_idx: torch.Tensor | None,
    ) -> tuple[torch.Tensor, TimeMixState | None]:
        """``forward`` and ``prefill`` (:class:`~hybridzoo.nn.sequence_mixer.SequenceMixer`):
        ``y`` from ``state`` (``None``: zeros), and the final state when ``want_state``."""
        if state is not None:
            shift, wkv = state
        elif want_state:
            shift, wkv = self.init_state(x.shape[0])
        else:  # a plain forward: the kernel starts from zeros and returns no state
            shift, wkv = x.new_zeros(x.shape[0], self.hidden_size), None
        y, final = self._run(x, shift, wkv, want_state, seq_idx)
        if not want_state:
            return y, None
        return y, (x[:, -1].clone(), cast(torch.Tensor, final))

    def step(self, x_t: torch.Tensor, state: TimeMixState) -> tuple[torch.Tensor, TimeMixState]:
        """One token: ``x_t`` [B, H] -> ``y_t`` [B, H]; updates ``state`` in place."""
        shift, wkv = state
        r, k, v, g, log_decay = self._project(x_t.unsqueeze(1), shift.unsqueeze(1))
        o = gla_ops.gla_step(
            r[:, 0], k[:, 0], v[:, 0], log_decay[:, 0], wkv, scale=1.0, bonus=self.time_faaaa
        )  # [B, nh, hs]; wkv updated in place
        shift.copy_(x_t)
        return self._finish(o, g[:, 0]), state


class RWKV6ChannelMix(OptionsBody[RWKVOptions]):
    """RWKV-6 channel-mixing body: ``[B, L, H] -> [B, L, H]``.

    ``y_t = σ(x^r_t W_r) ⊙ W_v relu(W_k x^k_t)²`` with ``x^□_t = x_t + (x_{t-1} - x_t) ⊙ μ_□``.

    Args:
        hidden_size: model width ``H``.
        options: the layer's options record (fields and defaults documented there,
            ``hybridzoo layers`` lists them); default its defaults. This body reads ``expand``
            and ``multiple_of`` (the inner width, RWKV-LM's ``dim_ffn``: see
            :func:`~hybridzoo_plugins.rwkv.formulas.ffn_size`) and ``init_depth``.
        device, dtype: where and how to create the parameters.
        **changes: any of its fields (``RWKV6ChannelMix(256, expand=4)``).

    State (step mode): ``(shift [B, H],)``.
    """

    Options = RWKVOptions

    def build(self, hidden_size: int, o: RWKVOptions, fk: dict[str, Any]) -> None:
        self.hidden_size = at_least(1).check("hidden_size", hidden_size)
        self.ffn_size = ffn_size(hidden_size, o.expand, o.multiple_of)
        depth = o.init_depth
        h, f = hidden_size, self.ffn_size
        self.time_maa_k = nn.Parameter(torch.empty(1, 1, h, **fk))
        self.time_maa_r = nn.Parameter(torch.empty(1, 1, h, **fk))
        self.key = nn.Linear(h, f, bias=False, **fk)
        self.receptance = nn.Linear(h, h, bias=False, **fk)
        self.value = nn.Linear(f, h, bias=False, **fk)
        self.reset_parameters(depth)

    @torch.no_grad()
    def reset_parameters(self, init_depth: float = 0.5) -> None:
        """RWKV-LM's initial values (small instead of zero value/receptance; see module doc)."""
        depth = _DEPTH.check("init_depth", init_depth)
        h = self.hidden_size
        ramp = (torch.arange(h, dtype=torch.float64) / h).view(1, 1, h)
        self.time_maa_k.copy_(1.0 - ramp.pow(1.0 - depth))
        self.time_maa_r.copy_(1.0 - ramp.pow(1.0 - depth))
        nn.init.orthogonal_(self.key.weight, gain=1.0)
        nn.init.orthogonal_(self.receptance.weight, gain=0.1)
        nn.init.orthogonal_(self.value.weight, gain=0.1)

    def _mix(self, x: torch.Tensor, x_prev: torch.Tensor) -> torch.Tensor:
        dx = x_prev - x
        xk = torch.addcmul(x, dx, self.time_maa_k)
        xr = torch.addcmul(x, dx, self.time_maa_r)
        k = torch.relu_(self.key(xk)).square()  # [..., F]; relu in place on a fresh output
        return torch.sigmoid(self.receptance(xr)) * self.value(k)

    def forward(self, x: torch.Tensor, *, seq_idx: torch.Tensor | None = None) -> torch.Tensor:
        """``[B, L, H] -> [B, L, H]`` from a fresh (zero) previous token; with ``seq_idx [B, L]``
        (packed documents) also at each document's start."""
        return self._mix(x, _shifted(x, x.new_zeros(x.shape[0], self.hidden_size), seq_idx))

    def init_state(self, batch_size: int) -> ChannelMixState:
        """Zero state ``(shift [B, H],)`` on the module's device and dtype."""
        return (self.key.weight.new_zeros(batch_size, self.hidden_size),)

    def prefill(
        self,
        x: torch.Tensor,
        state: ChannelMixState | None = None,
        *,
        seq_idx: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, ChannelMixState]:
        """Forward over ``x`` [B, L, H] from ``state`` (``None``: fresh); return the final state
        (``seq_idx``: as :meth:`RWKV6TimeMix.prefill`)."""
        shift = x.new_zeros(x.shape[0], self.hidden_size) if state is None else state[0]
        return self._mix(x, _shifted(x, shift, seq_idx)), (x[:, -1].clone(),)

    def step(
        self, x_t: torch.Tensor, state: ChannelMixState
    ) -> tuple[torch.Tensor, ChannelMixState]:
        """One token: ``x_t`` [B, H] -> ``y_t`` [B, H]; updates ``state`` in place."""
        (shift,) = state
        y = self._mix(x_t.unsqueeze(1), shift.unsqueeze(1)).squeeze(1)
        shift.copy_(x_t)
        return y, state


def make_bodies(
    o: RWKVOptions,
    hidden_size: int,
    *,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
) -> list[nn.Module]:
    """The bodies of one ``rwkv`` block: ``[RWKV6TimeMix, RWKV6ChannelMix]`` (``device`` and
    ``dtype`` go to both)."""
    made = [RWKV6TimeMix, RWKV6ChannelMix]
    return [body(hidden_size, o, device=device, dtype=dtype) for body in made]

"""The Mamba-2 mixer (Dao & Gu, "Transformers are SSMs: Generalized Models and Efficient
Algorithms Through Structured State Space Duality", ICML 2024), a body ``[B, L, H] -> [B, L, H]``::

    z, xBC, dt = in_proj(u)                         # [B, L, I], [B, L, I + 2GN], [B, L, h]
    x, B, C    = silu(causal_conv1d(xBC))           # [B, L, h, P], [B, L, G, N] twice
    dt         = clamp(softplus(dt + dt_bias))      # [B, L, h], positive
    A          = -exp(A_log)                        # [h], one scalar decay per head
    h_t        = exp(dt_t A) h_{t-1} + dt_t x_t ⊗ B_t   # per head [P, N]; head j uses group
    y_t        = h_t C_t + D ⊙ x_t                  #   j // (h / G) of B and C
    out        = out_proj(rms_norm(y ⊙ silu(z)) · w)    # RMS per group of I / G channels

with ``I = expand_factor · H``, ``h = I / P`` heads of ``P = head_dim`` channels, state size
``N`` and ``G`` groups. Parameter names and shapes are those of transformers' ``Mamba2Mixer``
(``in_proj``, ``conv1d``, ``dt_bias``, ``A_log``, ``D``, ``norm.weight``, ``out_proj``), so its
state dicts load as they are (:mod:`hybridzoo_plugins.mamba2.convert`). The scan runs in
:func:`hybridzoo.ops.chunk_ssd` (chunkwise parallel) and :func:`hybridzoo.ops.ssd_step` (decoding).

Step-mode state: ``(conv_window [B, I + 2GN, K-1], ssm [B, h, P, N])``: the last ``K-1`` inputs
of the convolution and the SSM state (mamba_ssm's and transformers' layout; transformers' conv
cache keeps ``K`` inputs, the oldest of which is never used again).
"""

from __future__ import annotations

import math
from typing import Any, cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from hybridzoo.nn.gated_norm import GatedRMSNorm
from hybridzoo.nn.init import log_uniform_, time_step_bias_
from hybridzoo.nn.options_body import OptionsBody
from hybridzoo.nn.sequence_mixer import SequenceMixer
from hybridzoo.nn.short_conv import ShortConvolution
from hybridzoo.nn.step_cache import DerivedTensors
from hybridzoo.ops import chunk_ssd, ssd_step
from hybridzoo.plugin import at_least
from hybridzoo_plugins.mamba2 import Mamba2Options
from hybridzoo_plugins.mamba2.formulas import conv_channels, inner_width, num_heads

__all__ = ["Mamba2Mixer", "Mamba2State", "make_bodies"]

Mamba2State = tuple[Tensor, Tensor]
"""``(conv_window [B, I + 2GN, K-1], ssm [B, h, P, N])``."""

#: mamba_ssm's range of the initial decay rates: ``A = -U(1, 16)`` per head
A_INIT_RANGE = (1.0, 16.0)


class Mamba2Mixer(OptionsBody[Mamba2Options], SequenceMixer):
    """The Mamba-2 mixer body.

    Args:
        hidden_size: model width ``H``.
        options: the layer's options record (fields and defaults documented there,
            ``hybridzoo layers`` lists them); default its defaults.
        device, dtype: where and how to create the parameters.
        **changes: any of its fields (``Mamba2Mixer(256, head_dim=32, num_groups=2)``).

    Time steps are clamped to ``[dt_limit_min, dt_limit_max]`` (transformers'
    ``time_step_limit``). Initialisation as mamba_ssm: ``A_log = log U(1, 16)`` per head,
    ``D = 1``, ``dt_bias`` = softplus⁻¹ of time steps log-uniform in ``[dt_min, dt_max]`` and at
    least ``dt_init_floor``, PyTorch's defaults for the projections and the convolution, the
    norm weight 1. ``A_log``, ``D`` and ``dt_bias`` carry ``_no_weight_decay = True``.
    """

    Options = Mamba2Options

    def build(self, hidden_size: int, o: Mamba2Options, fk: dict[str, Any]) -> None:
        self.hidden_size = hidden_size
        self.intermediate_size = inner_width(hidden_size, o.expand_factor)
        self.num_heads = num_heads(self.intermediate_size, o.head_dim, o.num_groups)
        self.head_dim, self.num_groups, self.state_size = o.head_dim, o.num_groups, o.state_size
        self.conv_dim = conv_channels(self.intermediate_size, o.num_groups, o.state_size)
        self.dt_min, self.dt_max, self.dt_init_floor = o.dt_min, o.dt_max, o.dt_init_floor
        high = math.inf if o.dt_limit_max is None else o.dt_limit_max
        self.dt_limit = (o.dt_limit_min, high)
        self.chunk_size = o.chunk_size
        inner, heads = self.intermediate_size, self.num_heads
        bias, conv_size, num_groups = o.bias, o.conv_size, o.num_groups

        self.in_proj = nn.Linear(hidden_size, inner + self.conv_dim + heads, bias=bias, **fk)
        self.conv1d = ShortConvolution(self.conv_dim, conv_size, bias=o.conv_bias, **fk)
        self.dt_bias = nn.Parameter(torch.empty(heads, **fk))
        self.A_log = nn.Parameter(torch.empty(heads, **fk))
        self.D = nn.Parameter(torch.empty(heads, **fk))
        self.norm = GatedRMSNorm(inner, group_size=inner // num_groups, eps=o.norm_eps, **fk)
        self.out_proj = nn.Linear(inner, hidden_size, bias=bias, **fk)
        for p in (self.dt_bias, self.A_log, self.D):
            p._no_weight_decay = True  # type: ignore[attr-defined]
        self._derived = DerivedTensors()  # step mode's A = -exp(A_log)
        self.reset_ssm_parameters()

    @torch.no_grad()
    def reset_ssm_parameters(self) -> None:
        """The SSM initialisation: ``dt_bias``, ``A_log`` and ``D`` (see the class docstring)."""
        time_step_bias_(self.dt_bias, self.dt_min, self.dt_max, self.dt_init_floor)
        log_uniform_(self.A_log, *A_INIT_RANGE)
        self.D.fill_(1.0)

    def extra_repr(self) -> str:
        return (
            f"hidden_size={self.hidden_size}, intermediate_size={self.intermediate_size}, "
            f"num_heads={self.num_heads}, head_dim={self.head_dim}, "
            f"state_size={self.state_size}, num_groups={self.num_groups}"
        )

    # -- shared by both modes -----------------------------------------------------------------

    def _projections(self, u: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """``z [..., I]``, ``xBC [..., I + 2GN]``, ``dt [..., h]`` (before the convolution)."""
        # three products rather than one split: their gradients then need no concatenation
        # of [B, L, 2I + 2GN + h] in the backward pass
        sizes = [self.intermediate_size, self.conv_dim, self.num_heads]
        weights = self.in_proj.weight.split(sizes)
        biases = [None] * 3 if self.in_proj.bias is None else self.in_proj.bias.split(sizes)
        return tuple(F.linear(u, w, b) for w, b in zip(weights, biases, strict=True))  # type: ignore[return-value]

    def _time_step(self, dt: Tensor) -> Tensor:
        """``clamp(softplus(dt + dt_bias))``, positive; ``[..., h]``."""
        dt = F.softplus(dt + self.dt_bias)
        low, high = self.dt_limit
        if low > 0.0 or high < math.inf:
            dt = dt.clamp(min=low, max=None if high == math.inf else high)
        return dt

    def _split(self, xbc: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """``xBC [..., I + 2GN]`` → ``x [..., h, P]``, ``B, C [..., G, N]``."""
        gn = self.num_groups * self.state_size
        x, b, c = xbc.split([self.intermediate_size, gn, gn], dim=-1)
        lead = xbc.shape[:-1]
        return (
            x.unflatten(-1, (self.num_heads, self.head_dim)),
            b.reshape(*lead, self.num_groups, self.state_size),
            c.reshape(*lead, self.num_groups, self.state_size),
        )

    def _output(self, y: Tensor, x: Tensor, z: Tensor) -> Tensor:
        """``out_proj(norm((y + D x) · silu(z)))``: ``y, x [..., h, P]``, ``z [..., I]``."""
        y = torch.addcmul(y, x, self.D.unsqueeze(-1))  # the D skip, per head
        return self.out_proj(self.norm(y.flatten(-2), z))

    # -- sequence mode ------------------------------------------------------------------------

    def _mix(
        self, u: Tensor, state: Mamba2State | None, want_state: bool, seq_idx: Tensor | None
    ) -> tuple[Tensor, Mamba2State | None]:
        z, xbc, dt = self._projections(u)
        window, ssm0 = (None, None) if state is None else state
        xbc, new_window = self.conv1d(xbc, window, output_final_window=want_state, seq_idx=seq_idx)
        x, b, c = self._split(xbc)
        y, ssm = chunk_ssd(
            x,
            self._time_step(dt),
            -torch.exp(self.A_log),
            b,
            c,
            initial_state=ssm0,
            output_final_state=want_state,
            chunk_size=self.chunk_size,
            seq_idx=seq_idx,
        )
        out = self._output(y, x, z)
        if not want_state:
            return out, None
        return out, (cast(Tensor, new_window), cast(Tensor, ssm).to(u.dtype))

    # -- step mode ----------------------------------------------------------------------------

    def init_state(self, batch_size: int) -> Mamba2State:
        """The zero state ``(conv_window [B, I + 2GN, K-1], ssm [B, h, P, N])``, in the module's
        device and dtype."""
        at_least(0).check("batch_size", batch_size)
        ssm = self.A_log.new_zeros(batch_size, self.num_heads, self.head_dim, self.state_size)
        return self.conv1d.init_window(batch_size), ssm

    def step(self, x_t: Tensor, state: Mamba2State) -> tuple[Tensor, Mamba2State]:
        """One position ``x_t [B, H] -> y_t [B, H]``; updates ``state`` in place and returns it.

        Inference only: autograd does not go through the in-place update.
        """
        window, ssm = state
        sizes = [self.intermediate_size, self.conv_dim, self.num_heads]
        z, xbc, dt = self.in_proj(x_t).split(sizes, dim=-1)  # one product for one position
        x, b, c = self._split(self.conv1d.step(xbc, window))
        A = self._derived.get("A", (self.A_log,), lambda: -torch.exp(self.A_log))
        y = ssd_step(x, self._time_step(dt), A, b, c, ssm)
        return self._output(y, x, z), state


def make_bodies(o: Mamba2Options, hidden_size: int) -> Mamba2Mixer:
    """The mamba2 layer's body: one :class:`Mamba2Mixer`."""
    return Mamba2Mixer(hidden_size, o)

"""The Mamba-1 selective-SSM mixer (Gu & Dao 2023, "Mamba: Linear-Time Sequence Modeling with
Selective State Spaces", arXiv:2312.00752), as a hybridzoo body ``[B, L, H] -> [B, L, H]``::

    x, z   = in_proj(h)                                   # [B, L, I] each, I = expand·H
    u      = silu(causal_depthwise_conv1d(x))             # kernel K, over time
    dt_low, B, C = x_proj(u)                              # [B, L, R], [B, L, N], [B, L, N]
    dt     = softplus(dt_proj(dt_low))                    # [B, L, I]
    A      = -exp(A_log)                                  # [I, N]
    h_t    = exp(dt_t ⊙ A) ⊙ h_{t-1} + (dt_t ⊙ u_t) B_t    # [B, I, N]
    y_t    = (h_t C_t + D ⊙ u_t) ⊙ silu(z_t)
    out    = out_proj(y)

Parameter names and shapes are those of the reference mixer (``mamba_ssm``'s ``Mamba``) and of
transformers' ``MambaMixer``: ``in_proj``, ``conv1d``, ``x_proj``, ``dt_proj``, ``A_log``, ``D``,
``out_proj``, so their state dicts load directly (see :mod:`hybridzoo_plugins.mamba.convert`).
The convolution (+ SiLU) runs in :func:`hybridzoo.ops.selective_scan.causal_conv1d` and the scan
in :func:`hybridzoo.ops.selective_scan.selective_scan` (fused compiled CPU kernels, or torch).

Step-mode state: ``(conv_window [B, I, K-1], ssm [B, I, N])``: the last K-1 inputs of the
convolution and the SSM state.

Packed documents: ``forward(x, seq_idx=...)`` and ``prefill`` hand ``seq_idx [B, L]`` to both
kernels: the convolution reads zeros before a document's start and the SSM state restarts there.
"""

from __future__ import annotations

from typing import Any, cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from hybridzoo.nn.init import time_step_bias_
from hybridzoo.nn.options_body import OptionsBody
from hybridzoo.nn.sequence_mixer import SequenceMixer
from hybridzoo.nn.short_conv import conv_step
from hybridzoo.nn.step_cache import DerivedTensors
from hybridzoo.ops.selective_scan import (
    BACKENDS,
    causal_conv1d,
    selective_scan,
    selective_state_update,
)
from hybridzoo.plugin import at_least, one_of
from hybridzoo_plugins.mamba import MambaOptions
from hybridzoo_plugins.mamba.formulas import intermediate_size, resolve_dt_rank

__all__ = ["MambaMixer", "MambaState", "make_bodies"]

MambaState = tuple[Tensor, Tensor]
"""``(conv_window [B, I, K-1], ssm_state [B, I, N])``."""


class MambaMixer(OptionsBody[MambaOptions], SequenceMixer):
    """Mamba-1 mixer body: ``[B, L, H] -> [B, L, H]``.

    Args:
        hidden_size: model width ``H``.
        options: the layer's options record (fields and defaults documented there,
            ``hybridzoo layers`` lists them); default its defaults. ``dt_rank="auto"`` is
            ``ceil(H / 16)``; ``dt_proj.bias`` = softplus⁻¹ of initial time steps log-uniform in
            ``[dt_min, dt_max]``, at least ``dt_init_floor``.
        scan_backend: ``backend`` of :func:`~hybridzoo.ops.selective_scan.selective_scan` and
            :func:`~hybridzoo.ops.selective_scan.causal_conv1d` (``"auto"``, ``"compiled"`` or
            ``"torch"``; a plain attribute, may be changed later). Default ``"auto"``.
        device, dtype: where and how to create the parameters.
        **changes: any of its fields (``MambaMixer(256, state_size=8)``).

    Initialisation as the reference: S4D-real ``A_log[i, n] = log(n + 1)``, ``D = 1``,
    ``dt_proj.weight`` uniform in ``±R^-0.5``, PyTorch's defaults for the other layers.
    """

    Options = MambaOptions

    def __init__(
        self,
        hidden_size: int,
        options: MambaOptions | None = None,
        *,
        scan_backend: str = "auto",
        **changes: Any,
    ) -> None:
        super().__init__(hidden_size, options, **changes)  # device, dtype and options
        self.scan_backend = one_of(*BACKENDS).check("scan_backend", scan_backend)

    def build(self, hidden_size: int, o: MambaOptions, fk: dict[str, Any]) -> None:
        self.hidden_size = at_least(1).check("hidden_size", hidden_size)
        self.state_size, self.conv_size = o.state_size, o.conv_size
        self.intermediate_size = intermediate_size(hidden_size, o.expand_factor)
        self.expand_factor = o.expand_factor
        self.dt_rank = resolve_dt_rank(hidden_size, o.dt_rank)
        self.dt_min, self.dt_max = float(o.dt_min), float(o.dt_max)
        self.dt_init_floor = float(o.dt_init_floor)
        bias, conv_bias = o.bias, o.conv_bias
        inner, n, k, rank = self.intermediate_size, self.state_size, self.conv_size, self.dt_rank

        self.in_proj = nn.Linear(hidden_size, 2 * inner, bias=bias, **fk)
        self.conv1d = nn.Conv1d(
            inner, inner, kernel_size=k, groups=inner, padding=k - 1, bias=conv_bias, **fk
        )
        self.x_proj = nn.Linear(inner, rank + 2 * n, bias=False, **fk)
        self.dt_proj = nn.Linear(rank, inner, bias=True, **fk)
        self.A_log = nn.Parameter(torch.empty(inner, n, **fk))
        self.D = nn.Parameter(torch.empty(inner, **fk))
        self.out_proj = nn.Linear(inner, hidden_size, bias=bias, **fk)
        # as mamba_ssm: no weight decay on A_log and D
        self.A_log._no_weight_decay = True  # type: ignore[attr-defined]
        self.D._no_weight_decay = True  # type: ignore[attr-defined]
        self._derived = DerivedTensors()  # step mode's A = -exp(A_log)
        self.reset_ssm_parameters()

    @torch.no_grad()
    def reset_ssm_parameters(self) -> None:
        """The SSM-specific initialisation: dt_proj, A_log (S4D-real) and D."""
        std = self.dt_rank**-0.5
        nn.init.uniform_(self.dt_proj.weight, -std, std)
        w = time_step_bias_(self.dt_proj.bias, self.dt_min, self.dt_max, self.dt_init_floor)
        a = torch.arange(1, self.state_size + 1, dtype=torch.float64, device=w.device)
        self.A_log.copy_(torch.log(a).expand(self.intermediate_size, -1))
        self.D.fill_(1.0)

    def extra_repr(self) -> str:
        return (
            f"hidden_size={self.hidden_size}, intermediate_size={self.intermediate_size}, "
            f"state_size={self.state_size}, conv_size={self.conv_size}, dt_rank={self.dt_rank}"
        )

    # -- sequence mode ----------------------------------------------------------------------

    def _mix(
        self, x: Tensor, state: MambaState | None, want_state: bool, seq_idx: Tensor | None
    ) -> tuple[Tensor, MambaState | None]:
        inner, n, rank = self.intermediate_size, self.state_size, self.dt_rank
        # in_proj as two products, x and z contiguous: their gradients then need no [B, L, 2I]
        # concatenation in the backward pass
        w_x, w_z = self.in_proj.weight.split(inner, dim=0)  # [I, H] each
        b_x, b_z = (None, None) if self.in_proj.bias is None else self.in_proj.bias.split(inner)
        xi = F.linear(x, w_x, b_x)  # [B, L, I]
        z = F.linear(x, w_z, b_z)  # [B, L, I]
        window, ssm0 = (None, None) if state is None else state
        u, new_window = causal_conv1d(
            xi,
            self.conv1d.weight.squeeze(1),  # [I, K]
            self.conv1d.bias,
            initial_window=window,
            activation="silu",
            output_final_window=want_state,
            backend=self.scan_backend,
            seq_idx=seq_idx,
        )  # [B, L, I]
        dt_low, b, c = self.x_proj(u).split([rank, n, n], dim=-1)  # [B, L, R|N|N]
        delta = F.linear(dt_low, self.dt_proj.weight)  # [B, L, I]; bias added in the scan
        y, ssm = selective_scan(
            u,
            delta,
            -torch.exp(self.A_log),
            b,
            c,
            self.D,
            z,
            self.dt_proj.bias,
            True,
            initial_state=ssm0,
            output_final_state=want_state,
            backend=self.scan_backend,
            seq_idx=seq_idx,
        )
        out = self.out_proj(y)  # [B, L, H]
        if not want_state:
            return out, None
        return out, (cast(Tensor, new_window), cast(Tensor, ssm))

    # -- step mode --------------------------------------------------------------------------

    def init_state(self, batch_size: int) -> MambaState:
        """Zero state ``(conv_window [B, I, K-1], ssm [B, I, N])`` on the module's device/dtype."""
        at_least(1).check("batch_size", batch_size)
        fk = {"device": self.A_log.device, "dtype": self.A_log.dtype}
        inner = self.intermediate_size
        return (
            torch.zeros(batch_size, inner, self.conv_size - 1, **fk),
            torch.zeros(batch_size, inner, self.state_size, **fk),
        )

    def clear_decode_cache(self) -> None:
        """Forget the cached ``A = -exp(A_log)`` of :meth:`step` (needed after writes through
        ``A_log.data``, which keep its version; see
        :class:`~hybridzoo.nn.step_cache.DerivedTensors`)."""
        self._derived.clear()

    def step(self, x_t: Tensor, state: MambaState) -> tuple[Tensor, MambaState]:
        """One token ``x_t`` [B, H] -> ``y_t`` [B, H]; updates ``state`` in place and returns it."""
        window, ssm = state
        inner, n, rank = self.intermediate_size, self.state_size, self.dt_rank
        xi, z = self.in_proj(x_t).split(inner, dim=-1)  # [B, I] each
        w = self.conv1d.weight.view(inner, self.conv_size)  # [I, K]
        u = conv_step(xi, window, w, self.conv1d.bias, "silu")  # [B, I]; window shifted
        dt_low, b, c = self.x_proj(u).split([rank, n, n], dim=-1)  # [B, R|N|N]
        delta = F.linear(dt_low, self.dt_proj.weight)  # [B, I]
        y = selective_state_update(
            ssm,
            u,
            delta,
            self._derived.get("A", (self.A_log,), lambda: -torch.exp(self.A_log)),
            b,
            c,
            self.D,
            z,
            self.dt_proj.bias,
            True,
            backend=self.scan_backend,
        )  # [B, I]; ssm updated in place
        return self.out_proj(y), state


def make_bodies(o: MambaOptions, hidden_size: int) -> MambaMixer:
    """The mamba layer's body: one :class:`MambaMixer`."""
    return MambaMixer(hidden_size, o)

"""The obvious Mamba-2 mixer: one position at a time, one formula per line, as the paper.

Reads the weights of a :class:`~hybridzoo_plugins.mamba2.layer.Mamba2Mixer` and shares no code
with it: the convolution is a dot product with the last K inputs, the SSM an explicit update of
each head's ``[P, N]`` state, the gated norm written out. Slow on purpose; the tests and the
conformance kit compare the fast mixer with it (use float64 for tight comparisons).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import Tensor

if TYPE_CHECKING:  # pragma: no cover
    from hybridzoo_plugins.mamba2.layer import Mamba2Mixer

__all__ = ["reference_forward", "reference_scan"]


def _silu(x: Tensor) -> Tensor:
    return x / (1 + torch.exp(-x))


def _softplus(x: Tensor) -> Tensor:
    return torch.logaddexp(x, torch.zeros_like(x))


def reference_scan(
    mixer: Mamba2Mixer,
    u: Tensor,
    state: tuple[Tensor, Tensor] | None = None,
    seq_idx: Tensor | None = None,
) -> tuple[Tensor, tuple[Tensor, Tensor]]:
    """The mixer applied to ``u [B, T, H]`` from ``state = (conv_window [B, C, K-1], ssm [B, h,
    P, N])`` (None: zeros); returns ``(y [B, T, H], the state after the last position)``. With
    ``seq_idx [B, T]``, the convolution's past and the SSM state are zeroed where a new document
    starts."""
    batch, length, _ = u.shape
    inner, heads, p, n = mixer.intermediate_size, mixer.num_heads, mixer.head_dim, mixer.state_size
    groups, k = mixer.num_groups, mixer.conv1d.kernel_size
    channels = inner + 2 * groups * n
    w_in, b_in = mixer.in_proj.weight, mixer.in_proj.bias  # [I + C + h, H]
    w_conv, b_conv = mixer.conv1d.weight[:, 0, :], mixer.conv1d.bias  # [C, K]
    A = -torch.exp(mixer.A_log)  # [h]
    w_norm, eps, group_width = mixer.norm.weight, mixer.norm.eps, inner // groups
    w_out, b_out = mixer.out_proj.weight, mixer.out_proj.bias
    low, high = mixer.dt_limit

    if state is None:
        past = [u.new_zeros(batch, channels) for _ in range(k - 1)]  # oldest first
        h = u.new_zeros(batch, heads, p, n)
    else:
        window, h = state
        past = [window[:, :, j] for j in range(k - 1)]
    outputs = []
    for t in range(length):
        if seq_idx is not None and t > 0:  # a new document forgets everything before it
            keep = seq_idx[:, t] == seq_idx[:, t - 1]  # [B]; where: a NaN never crosses
            past = [torch.where(keep[:, None], p_j, 0.0) for p_j in past]
            h = torch.where(keep[:, None, None, None], h, 0.0)
        proj = u[:, t] @ w_in.T + (0 if b_in is None else b_in)
        z, xbc, dt_raw = proj[:, :inner], proj[:, inner : inner + channels], proj[:, -heads:]
        past = [*past, xbc]
        conv = (torch.stack(past, dim=-1) * w_conv).sum(-1) + (0 if b_conv is None else b_conv)
        past = past[1:]
        xbc = _silu(conv)  # [B, C]
        x = xbc[:, :inner].reshape(batch, heads, p)
        B_t = xbc[:, inner : inner + groups * n].reshape(batch, groups, n)
        C_t = xbc[:, inner + groups * n :].reshape(batch, groups, n)
        dt = _softplus(dt_raw + mixer.dt_bias).clamp(min=low, max=high)  # [B, h]
        new_h, y = [], []
        for j in range(heads):
            g = j * groups // heads  # the group of head j
            decay = torch.exp(dt[:, j] * A[j])[:, None, None]  # [B, 1, 1]
            h_j = decay * h[:, j] + dt[:, j, None, None] * x[:, j, :, None] * B_t[:, g, None, :]
            new_h.append(h_j)  # [B, P, N]
            y.append(h_j @ C_t[:, g, :, None] + mixer.D[j] * x[:, j, :, None])  # [B, P, 1]
        h = torch.stack(new_h, dim=1)
        y = torch.cat(y, dim=1).squeeze(-1)  # [B, I]
        # gated RMSNorm: the gate first, then the RMS of each group of I / G channels
        v = (y * _silu(z)).reshape(batch, groups, group_width)
        v = v / torch.sqrt(v.pow(2).mean(-1, keepdim=True) + eps)
        v = v.reshape(batch, inner) * w_norm
        outputs.append(v @ w_out.T + (0 if b_out is None else b_out))
    y_all = torch.stack(outputs, 1) if outputs else u.new_zeros(batch, 0, mixer.hidden_size)
    window = torch.stack(past, -1) if k > 1 else u.new_zeros(batch, channels, 0)
    return y_all, (window, h)


def reference_forward(mixer: Mamba2Mixer, u: Tensor) -> Tensor:
    """The mixer's output for ``u [B, T, H]`` from a zero state (the kit's reference hook)."""
    return reference_scan(mixer, u)[0]

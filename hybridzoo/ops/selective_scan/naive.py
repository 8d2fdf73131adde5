"""The obvious time-step references of the selective scan and of the causal convolution: one loop
over t, the paper's recurrence.

Slow (and O(T²) under autograd because of ``x[:, t]`` indexing): for tests only. Same signatures
and maths as :func:`hybridzoo.ops.selective_scan.selective_scan` and
:func:`hybridzoo.ops.selective_scan.causal_conv1d`, packing (``seq_idx``) included.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["naive_causal_conv1d", "naive_selective_scan", "softplus"]


def softplus(x: Tensor) -> Tensor:
    """``log(1 + exp(x))`` without a threshold (``F.softplus`` returns ``x`` above 20)."""
    return torch.logaddexp(x, torch.zeros_like(x))


def _same_document(seq_idx: Tensor | None, t: int, s: int) -> Tensor | None:
    """``[B]`` bool: positions t and s (s < 0: the initial window, i.e. position 0) of each row
    are in one document; None without packing."""
    if seq_idx is None:
        return None
    return seq_idx[:, t] == seq_idx[:, max(s, 0)]


def naive_selective_scan(
    u,
    delta,
    A,
    B,
    C,
    D=None,
    z=None,
    delta_bias=None,
    delta_softplus=False,
    *,
    seq_idx=None,
    initial_state=None,
    output_final_state=False,
):
    """Reference selective scan, ``(y, h_T or None)`` (see the fast version for the arguments)::

    dt_t = softplus(delta_t + delta_bias)            # or delta_t + delta_bias
    h_{t-1} = 0 where a document starts at t (seq_idx[:, t] != seq_idx[:, t-1])
    h_t  = exp(dt_t ⊙ A) ⊙ h_{t-1} + (dt_t ⊙ u_t) B_t  # [B, I, N]
    y_t  = h_t C_t + D ⊙ u_t,  then  y_t *= silu(z_t)
    """
    batch, length, channels = u.shape
    dt = delta if delta_bias is None else delta + delta_bias
    if delta_softplus:
        dt = softplus(dt)
    h = u.new_zeros(batch, channels, A.shape[1]) if initial_state is None else initial_state
    ys = []
    for t in range(length):
        same = _same_document(seq_idx, t, t - 1)
        if same is not None and t > 0:
            h = torch.where(same[:, None, None], h, torch.zeros_like(h))
        decay = torch.exp(dt[:, t, :, None] * A)  # [B, I, N]
        h = decay * h + (dt[:, t] * u[:, t])[:, :, None] * B[:, t, None, :]
        y = (h * C[:, t, None, :]).sum(-1)  # [B, I]
        if D is not None:
            y = y + D * u[:, t]
        if z is not None:
            y = y * F.silu(z[:, t])
        ys.append(y)
    y = torch.stack(ys, dim=1) if ys else u.new_zeros(batch, 0, channels)
    return y, (h if output_final_state else None)


def naive_causal_conv1d(
    x,
    weight,
    bias=None,
    *,
    initial_window=None,
    activation="silu",
    output_final_window=False,
    seq_idx=None,
):
    """Reference causal depthwise conv1d, ``(out, final window or None)``:
    ``out_t = act(bias + sum_k w[:, k] x_{t-K+1+k})``, one step at a time, where ``x_s`` for
    s < 0 comes from ``initial_window`` and any ``x_s`` of another document than t's is 0.  The
    final window: the last K-1 inputs of the row's last document (zeros before its start)."""
    batch, length, channels = x.shape
    size = weight.shape[1] - 1
    window = x.new_zeros(batch, channels, size) if initial_window is None else initial_window

    def read(t: int, s: int) -> Tensor:  # [B, I]: input s as seen from position t
        value = x[:, s] if s >= 0 else window[:, :, size + s]
        same = _same_document(seq_idx, t, s)
        return value if same is None else torch.where(same[:, None], value, 0.0)

    outs = []
    for t in range(length):
        acc = sum(weight[:, k] * read(t, t - size + k) for k in range(size + 1))
        acc = acc + bias if bias is not None else acc
        outs.append(F.silu(acc) if activation == "silu" else acc)
    out = torch.stack(outs, 1) if outs else x.new_zeros(batch, 0, channels)
    if not output_final_window:
        return out, None
    last = length - 1
    past = [read(last, last - size + 1 + j) for j in range(size)] if length else []
    final = torch.stack(past, -1) if past else window[:, :, :0] if not size else window
    return out, final

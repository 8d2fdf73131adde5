"""Slow, obvious Mamba-1 mixer reference: one token at a time, one formula per line, as the paper.

Reads the weights of a :class:`~hybridzoo_plugins.mamba.layer.MambaMixer` and shares no code with
it (the convolution is a dot product with the last K inputs, the SSM a plain loop over state
entries in matrix form). Tests and the conformance kit compare the fast mixer with it; use float64
for tight comparisons.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:  # pragma: no cover
    from hybridzoo_plugins.mamba.layer import MambaMixer

__all__ = ["mixer_reference"]


def _silu(x: torch.Tensor) -> torch.Tensor:
    return x / (1 + torch.exp(-x))


def _softplus(x: torch.Tensor) -> torch.Tensor:
    return torch.logaddexp(x, torch.zeros_like(x))


def mixer_reference(
    mixer: MambaMixer,
    x: torch.Tensor,
    initial_state: tuple[torch.Tensor, torch.Tensor] | None = None,
    output_final_state: bool = False,
    *,
    seq_idx: torch.Tensor | None = None,
) -> torch.Tensor | tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
    """The Mamba-1 mixer applied to ``x`` [B, T, H] with ``mixer``'s weights, a loop over t.

    Args:
        mixer: the module whose parameters are used.
        x: input ``[B, T, H]``.
        initial_state: ``(conv_window [B, I, K-1], h [B, I, N])``; zeros when ``None``.
        output_final_state: also return the state after the last token.
        seq_idx: ``[B, T]`` document numbers of packed documents: where a row's number
            changes, its convolution inputs and SSM state are forgotten (set to zero).

    Returns:
        ``y`` [B, T, H], or ``(y, (conv_window, h))`` when ``output_final_state``.
    """
    batch, length, _ = x.shape
    inner, n, k, rank = mixer.intermediate_size, mixer.state_size, mixer.conv_size, mixer.dt_rank
    w_in, b_in = mixer.in_proj.weight, mixer.in_proj.bias  # [2I, H]
    w_conv = mixer.conv1d.weight[:, 0, :]  # [I, K]
    b_conv = mixer.conv1d.bias
    w_x = mixer.x_proj.weight  # [R + 2N, H]
    w_dt, b_dt = mixer.dt_proj.weight, mixer.dt_proj.bias  # [I, R], [I]
    A = -torch.exp(mixer.A_log)  # [I, N]
    D = mixer.D  # [I]
    w_out, b_out = mixer.out_proj.weight, mixer.out_proj.bias  # [H, I]

    if initial_state is None:
        past = [x.new_zeros(batch, inner) for _ in range(k - 1)]  # oldest first
        h = x.new_zeros(batch, inner, n)
    else:
        window, h = initial_state
        past = [window[:, :, j] for j in range(k - 1)]
    outputs = []
    for t in range(length):
        if seq_idx is not None and t > 0:  # a new document starts from nothing
            keep = (seq_idx[:, t] == seq_idx[:, t - 1])[:, None]  # [B, 1]
            past = [torch.where(keep, p, 0.0) for p in past]
            h = torch.where(keep[:, :, None], h, 0.0)
        xz = x[:, t] @ w_in.T + (0 if b_in is None else b_in)  # [B, 2I]
        x_t, z_t = xz[:, :inner], xz[:, inner:]
        past = [*past, x_t]  # the last K inputs
        window_t = torch.stack(past, dim=-1)  # [B, I, K], oldest first
        conv = (window_t * w_conv).sum(-1) + (0 if b_conv is None else b_conv)
        u = _silu(conv)  # [B, I]
        proj = u @ w_x.T  # [B, R + 2N]
        dt_low, B_t, C_t = proj[:, :rank], proj[:, rank : rank + n], proj[:, rank + n :]
        dt = _softplus(dt_low @ w_dt.T + b_dt)  # [B, I]
        A_bar = torch.exp(dt[:, :, None] * A)  # [B, I, N]
        B_bar_u = dt[:, :, None] * B_t[:, None, :] * u[:, :, None]  # [B, I, N]
        h = A_bar * h + B_bar_u
        y = torch.einsum("bin,bn->bi", h, C_t) + D * u
        y = y * _silu(z_t)
        outputs.append(y @ w_out.T + (0 if b_out is None else b_out))  # [B, H]
        past = past[1:]
    out = torch.stack(outputs, dim=1) if outputs else x.new_zeros(batch, 0, mixer.hidden_size)
    if not output_final_state:
        return out
    window = torch.stack(past, dim=-1) if k > 1 else x.new_zeros(batch, inner, 0)  # [B, I, K-1]
    return out, (window, h)

"""Slow, obvious RWKV-6 references: one token at a time, one formula per line, as in the paper.

These read the weights of an :class:`~hybridzoo_plugins.rwkv.layer.RWKV6TimeMix` /
:class:`~hybridzoo_plugins.rwkv.layer.RWKV6ChannelMix` and share no code with them (the group norm
is written out, the WKV recurrence is a plain loop); tests and the conformance kit compare the
fast bodies with them. Use float64 for tight comparisons.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:  # pragma: no cover
    from hybridzoo_plugins.rwkv.layer import RWKV6ChannelMix, RWKV6TimeMix

__all__ = ["channel_mix_reference", "time_mix_reference"]


def time_mix_reference(
    mix: RWKV6TimeMix,
    x: torch.Tensor,
    initial_state: tuple[torch.Tensor, torch.Tensor] | None = None,
    output_final_state: bool = False,
    *,
    seq_idx: torch.Tensor | None = None,
) -> torch.Tensor | tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
    """RWKV-6 time-mixing of ``x`` [B, T, H] with ``mix``'s weights, a loop over t.

    Args:
        mix: the module whose parameters are used.
        x: input ``[B, T, H]``.
        initial_state: ``(x_prev [B, H], S [B, heads, hs, hs])``; zeros when ``None``.
        output_final_state: also return the state after the last token.
        seq_idx: ``[B, T]`` document numbers of packed documents: where a row's number
            changes, the previous token and the WKV state are forgotten (set to zero).

    Returns:
        ``y`` [B, T, H], or ``(y, (x_prev, S))`` when ``output_final_state``.
    """
    b, t_len, c = x.shape
    nh, hs, rank = mix.num_heads, mix.head_size, mix.mix_rank
    mu_x = mix.time_maa_x.view(c)
    mu = {
        "w": mix.time_maa_w.view(c),
        "k": mix.time_maa_k.view(c),
        "v": mix.time_maa_v.view(c),
        "r": mix.time_maa_r.view(c),
        "g": mix.time_maa_g.view(c),
    }
    lora_a = mix.time_maa_w1  # [H, 5r]
    lora_b = mix.time_maa_w2  # [5, r, H]
    w_r, w_k, w_v = mix.receptance.weight, mix.key.weight, mix.value.weight  # [out, in]
    w_g, w_o = mix.gate.weight, mix.output.weight
    u = mix.time_faaaa  # [nh, hs]
    eps = mix.ln_x.eps
    gamma, beta = mix.ln_x.weight.view(nh, hs), mix.ln_x.bias.view(nh, hs)

    if initial_state is None:
        x_prev = x.new_zeros(b, c)
        state = x.new_zeros(b, nh, hs, hs)
    else:
        x_prev, state = initial_state[0].clone(), initial_state[1].clone()

    ys = []
    for t in range(t_len):
        x_t = x[:, t]  # [B, H]
        if seq_idx is not None and t > 0:  # a new document starts from nothing
            keep = seq_idx[:, t] == seq_idx[:, t - 1]  # [B]
            x_prev = torch.where(keep[:, None], x_prev, 0.0)
            state = torch.where(keep[:, None, None, None], state, 0.0)
        delta = x_prev - x_t

        # data-dependent linear interpolation ("ddlerp")
        lora_in = x_t + delta * mu_x
        hidden = torch.tanh(lora_in @ lora_a).view(b, 5, rank)  # [B, 5, r]
        m = {name: hidden[:, i] @ lora_b[i] for i, name in enumerate("wkvrg")}  # each [B, H]
        xw, xk, xv, xr, xg = (x_t + delta * (mu[n] + m[n]) for n in "wkvrg")

        r = (xr @ w_r.T).view(b, nh, hs)
        k = (xk @ w_k.T).view(b, nh, hs)
        v = (xv @ w_v.T).view(b, nh, hs)
        g = torch.nn.functional.silu(xg @ w_g.T)  # [B, H]
        d = mix.time_decay.view(c) + torch.tanh(xw @ mix.time_decay_w1) @ mix.time_decay_w2
        decay = torch.exp(-torch.exp(d)).view(b, nh, hs)  # in (0, 1)

        # WKV, per head: o = r (S + diag(u) kᵀv); S <- diag(decay) S + kᵀv
        kv = k.unsqueeze(-1) * v.unsqueeze(-2)  # [B, nh, hs, hs]
        o = torch.einsum("bhi,bhij->bhj", r, state + u.unsqueeze(-1) * kv)  # [B, nh, hs]
        state = decay.unsqueeze(-1) * state + kv

        # group norm over each head, then gate and output projection
        mean = o.mean(-1, keepdim=True)
        var = o.var(-1, unbiased=False, keepdim=True)
        o = (o - mean) / torch.sqrt(var + eps) * gamma + beta
        ys.append((o.reshape(b, c) * g) @ w_o.T)
        x_prev = x_t

    y = torch.stack(ys, dim=1)  # [B, T, H]
    if output_final_state:
        return y, (x_prev.clone(), state)
    return y


def channel_mix_reference(
    mix: RWKV6ChannelMix,
    x: torch.Tensor,
    initial_state: tuple[torch.Tensor] | None = None,
    output_final_state: bool = False,
    *,
    seq_idx: torch.Tensor | None = None,
) -> torch.Tensor | tuple[torch.Tensor, tuple[torch.Tensor]]:
    """RWKV-6 channel-mixing of ``x`` [B, T, H] with ``mix``'s weights, a loop over t.

    ``y_t = σ(x^r W_r) ⊙ W_v relu(W_k x^k)²`` with ``x^□ = x_t + (x_{t-1} - x_t) ⊙ μ_□``
    (``x_{t-1} = 0`` at the start of a packed document of ``seq_idx``).
    Returns ``y`` [B, T, H], or ``(y, (x_prev,))`` when ``output_final_state``.
    """
    b, t_len, c = x.shape
    mu_k, mu_r = mix.time_maa_k.view(c), mix.time_maa_r.view(c)
    x_prev = x.new_zeros(b, c) if initial_state is None else initial_state[0].clone()
    ys = []
    for t in range(t_len):
        x_t = x[:, t]
        if seq_idx is not None and t > 0:
            x_prev = torch.where((seq_idx[:, t] == seq_idx[:, t - 1])[:, None], x_prev, 0.0)
        xk = x_t + (x_prev - x_t) * mu_k
        xr = x_t + (x_prev - x_t) * mu_r
        k = torch.relu(xk @ mix.key.weight.T) ** 2  # [B, F]
        ys.append(torch.sigmoid(xr @ mix.receptance.weight.T) * (k @ mix.value.weight.T))
        x_prev = x_t
    y = torch.stack(ys, dim=1)
    if output_final_state:
        return y, (x_prev.clone(),)
    return y

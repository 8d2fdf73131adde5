"""Causal multi-head attention: sliding-window or full, grouped-query heads, optional rotary
embeddings, QK-norm and a short convolution in front.

The body maps ``[B, L, H] -> [B, L, H]``: an optional depthwise causal convolution over the input
(``conv_size`` taps, no activation: the "short conv then attention" of Zoology's and the Based
paper's baselines), projections q ``H → heads·d`` and k, v ``H → kv_heads·d`` (grouped-query
attention: query head ``i`` reads kv head ``i // (heads / kv_heads)``), an optional LayerNorm of
each head's q and k, rotary embeddings on q and k (none with ``rope_base=None``, as Nemotron-H),
causal attention with scale ``1/√d`` (query ``t`` sees keys ``t-window+1 .. t``, or every key
``<= t`` with ``window_size=None``), and the output projection ``heads·d → H``. No ``L×L``
scores are built in forward, prefill or step (see :mod:`hybridzoo_plugins.attention.kernels`).

Decoding state, a tuple of batch-first tensors (nothing shared between rows):

- ``k_cache, v_cache [B, kv_heads, capacity, d]``: keys (after rotary) and values. With a window
  ``w`` a ring buffer of ``capacity = w`` slots (position ``s`` in slot ``s % w``); with
  ``window_size=None`` position ``s`` in slot ``s`` of a buffer whose capacity starts at
  ``initial_cache_len`` and doubles when a row would overflow it. Two states of one body
  concatenate along the batch after zero-padding their caches to the larger capacity (slots at
  or past a row's position are never read).
- ``pos [B]`` (int64): each row's number of tokens seen, so rows of different lengths can share
  a batch.
- with ``conv_size = K > 1``: ``conv_window [B, H, K-1]``, the last ``K-1`` inputs.

Step mode is inference only: ``step`` updates the state in place (no autograd through it) and
returns it (with a full cache that had to grow, a new, larger one); ``prefill`` returns a new
state and leaves the given one alone.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

from hybridzoo.nn import FeedForward
from hybridzoo.ops import causal_conv1d
from hybridzoo.packing import check_seq_idx, document_positions
from hybridzoo.plugin import at_least, boolean, in_range, option_kwargs
from hybridzoo_plugins.attention.kernels import (
    banded_attention,
    cached_attention,
    causal_attention,
    contain,
    decode_attention,
    packed_attention,
    poison,
)
from hybridzoo_plugins.attention.rotary import apply_rotary

if TYPE_CHECKING:  # pragma: no cover
    from hybridzoo_plugins.attention import AttentionOptions

State = tuple[Tensor, ...]

#: Initial capacity of the key/value cache when ``window_size=None`` (it doubles when full).
FULL_CACHE_INITIAL_LEN = 64

_BASE = in_range(0.0, math.inf, low_open=True, high_open=True, allow_none=True)


class SlidingWindowAttention(nn.Module):
    """Causal multi-head self-attention (a body: no outer norm or residual).

    Args:
        hidden_size: model width ``H``.
        num_heads: query heads.
        num_kv_heads: key/value heads, dividing ``num_heads`` (``None`` = ``num_heads``; 1 is
            multi-query attention). The decoding cache holds only these.
        head_dim: width ``d`` of each head (even when rotary is on).
        window_size: each query sees itself and the ``window_size - 1`` previous positions;
            ``None`` = full causal attention (a decoding cache that grows).
        qk_norm: a LayerNorm over ``head_dim`` (weight and bias, eps ``1e-5``, one for q and one
            for k, shared by the heads) on q and k before rotary (Edifice's QK-norm).
        rope_base: rotary base; ``None`` = no rotary embedding (no positional signal).
        bias: biases on the four projections.
        conv_size: taps of a depthwise causal convolution (with bias) on the input; 0 = none.

    Parameter count: :func:`hybridzoo_plugins.attention.formulas.attention_param_count`.
    """

    def __init__(
        self,
        hidden_size: int,
        *,
        num_heads: int = 4,
        num_kv_heads: int | None = None,
        head_dim: int = 64,
        window_size: int | None = 60,
        qk_norm: bool = True,
        rope_base: float | None = 10000.0,
        bias: bool = False,
        conv_size: int = 0,
    ) -> None:
        super().__init__()
        at_least(1).check("hidden_size", hidden_size)
        at_least(1).check("num_heads", num_heads)
        kv_heads = num_heads if num_kv_heads is None else num_kv_heads
        if at_least(1).check("num_kv_heads", kv_heads) and num_heads % kv_heads:
            raise ValueError(f"num_kv_heads ({kv_heads}) must divide num_heads ({num_heads})")
        self.rope_base = _BASE.check("rope_base", rope_base)
        multiple = 2 if rope_base is not None else 1  # rotary turns channel pairs
        at_least(multiple, multiple_of=multiple).check("head_dim", head_dim)
        at_least(1, allow_none=True).check("window_size", window_size)
        at_least(0).check("conv_size", conv_size)
        self.hidden_size, self.num_heads, self.num_kv_heads = hidden_size, num_heads, kv_heads
        self.head_dim, self.window_size, self.conv_size = head_dim, window_size, conv_size
        self.initial_cache_len = FULL_CACHE_INITIAL_LEN  # used when window_size is None
        self.q_proj = nn.Linear(hidden_size, num_heads * head_dim, bias=boolean.check("bias", bias))
        self.k_proj = nn.Linear(hidden_size, kv_heads * head_dim, bias=bias)
        self.v_proj = nn.Linear(hidden_size, kv_heads * head_dim, bias=bias)
        self.o_proj = nn.Linear(num_heads * head_dim, hidden_size, bias=bias)
        norm = boolean.check("qk_norm", qk_norm)
        self.q_norm: nn.Module = nn.LayerNorm(head_dim) if norm else nn.Identity()
        self.k_norm: nn.Module = nn.LayerNorm(head_dim) if norm else nn.Identity()
        self.conv: nn.Conv1d | None = None
        if conv_size:
            self.conv = nn.Conv1d(hidden_size, hidden_size, conv_size, groups=hidden_size)

    # ------------------------------------------------------------------ pieces
    def _short_conv(
        self, x: Tensor, window: Tensor | None = None, seq_idx: Tensor | None = None
    ) -> tuple[Tensor, Tensor | None]:
        """The input convolution ``[B, L, H]`` (from ``window [B, H, K-1]`` or zeros; zeros
        before each packed document of ``seq_idx``) and the last ``K-1`` inputs; the kernel
        runs in float32 for half-precision inputs."""
        assert self.conv is not None
        compute = torch.promote_types(x.dtype, torch.float32)
        out, final = causal_conv1d(
            x.to(compute),
            self.conv.weight.squeeze(1).to(compute),
            self.conv.bias.to(compute),
            initial_window=None if window is None else window.to(compute),
            activation=None,
            output_final_window=True,
            seq_idx=seq_idx,
        )
        # a copy: the kernel may hand back a view of its input as the window
        return out.to(x.dtype), final.to(x.dtype, copy=True)

    def _project(self, x: Tensor, positions: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """q ``[B, heads, L, d]`` and k, v ``[B, kv_heads, L, d]`` for ``x [B, L, H]`` at
        ``positions`` (``[L]`` or ``[B, L]``)."""
        batch, length, _ = x.shape
        d = self.head_dim
        q = self.q_norm(self.q_proj(x).view(batch, length, self.num_heads, d)).transpose(1, 2)
        k = self.k_norm(self.k_proj(x).view(batch, length, self.num_kv_heads, d)).transpose(1, 2)
        v = self.v_proj(x).view(batch, length, self.num_kv_heads, d).transpose(1, 2)
        if self.rope_base is not None:
            q, k = apply_rotary(q, k, positions, self.rope_base)
        return q, k, v

    def _merge(self, out: Tensor) -> Tensor:
        """``[B, heads, L, d] -> [B, L, H]`` through the output projection."""
        batch, _, length, _ = out.shape
        return self.o_proj(out.transpose(1, 2).reshape(batch, length, -1))

    # ------------------------------------------------------------------ protocol
    def forward(self, x: Tensor, *, seq_idx: Tensor | None = None) -> Tensor:
        """``x [B, L, H] -> [B, L, H]`` from a fresh start (position 0).

        ``seq_idx [B, L]`` (integers, non-decreasing along each row) numbers documents packed in
        a row: each attends within itself, its rotary positions restart at 0 and the short
        convolution reads zeros before it, so the output equals separate forwards of the
        documents.
        """
        positions = torch.arange(x.shape[1], device=x.device)
        if seq_idx is not None:
            seq_idx = check_seq_idx(seq_idx, x.shape[0], x.shape[1], x.device)
            positions = document_positions(seq_idx)
        if self.conv is not None:
            x = self._short_conv(x, seq_idx=seq_idx)[0]
        q, k, v = self._project(x, positions)
        k, v, bad = contain(x, k, v)
        if self.window_size is not None:
            out = banded_attention(q, k, v, self.window_size, seq_idx=seq_idx)
        elif seq_idx is not None:
            out = packed_attention(q, k, v, seq_idx)
        else:
            out = causal_attention(q, k, v)
        if bad is not None:
            out = poison(out, bad, self.window_size, positions)
        return self._merge(out)

    def init_state(self, batch_size: int) -> State:
        """Empty caches, ``pos`` zeros and (with a convolution) a zero input window."""
        at_least(1).check("batch_size", batch_size)
        weight = self.q_proj.weight
        capacity = self.window_size or self.initial_cache_len
        shape = (batch_size, self.num_kv_heads, capacity, self.head_dim)
        state = [weight.new_zeros(shape), weight.new_zeros(shape)]
        state.append(torch.zeros(batch_size, device=weight.device, dtype=torch.long))
        if self.conv is not None:
            state.append(weight.new_zeros(batch_size, self.hidden_size, self.conv_size - 1))
        return tuple(state)

    def _conv_step(self, x_t: Tensor, window: Tensor) -> Tensor:
        """One input through the convolution; shifts ``window`` in place."""
        assert self.conv is not None
        weight = self.conv.weight.squeeze(1)  # [H, K]
        taps = torch.cat((window, x_t.unsqueeze(-1)), -1)  # [B, H, K]
        window.copy_(taps[:, :, 1:])
        return (taps * weight).sum(-1) + self.conv.bias

    def step(self, x_t: Tensor, state: State) -> tuple[Tensor, State]:
        """One token ``x_t [B, H] -> y_t [B, H]``; updates the state in place (see the module
        docstring for the one exception, a full cache that grows)."""
        k_cache, v_cache, pos = state[:3]
        if self.conv is not None:
            x_t = self._conv_step(x_t, state[3])
        capacity = k_cache.shape[2]
        if self.window_size is None and int(pos.max()) >= capacity:
            k_cache, v_cache = _grow(k_cache, 2 * capacity), _grow(v_cache, 2 * capacity)
            capacity *= 2
        q, k, v = self._project(x_t.unsqueeze(1), pos.unsqueeze(1))  # [B, *, 1, d]
        rows = torch.arange(x_t.shape[0], device=pos.device)
        slot = pos % capacity
        k_cache[rows, :, slot] = k[:, :, 0]
        v_cache[rows, :, slot] = v[:, :, 0]
        valid = torch.arange(capacity, device=pos.device) <= pos.unsqueeze(1)  # [B, capacity]
        out = decode_attention(q, k_cache, v_cache, valid)
        pos.add_(1)
        return self._merge(out).squeeze(1), (k_cache, v_cache, pos, *state[3:])

    def prefill(self, x: Tensor, state: State | None = None) -> tuple[Tensor, State]:
        """Forward ``x [B, L, H]`` continuing from ``state`` (None = fresh); returns the new
        state (the given one is not modified)."""
        if state is None:
            state = self.init_state(x.shape[0])
        k_cache, v_cache, pos = state[:3]
        extra: tuple[Tensor, ...] = ()
        if self.conv is not None:
            x, window = self._short_conv(x, state[3])
            extra = (window,)
        length = x.shape[1]
        positions = pos.unsqueeze(1) + torch.arange(length, device=pos.device)  # [B, L]
        q, k, v = self._project(x, positions)
        new_pos = pos + length
        # the chunk attends to contained keys; the cache keeps them as they are
        ka, va, bad = contain(x, k, v)
        if self.window_size is None:
            out = self._prefill_full(q, ka, va, k_cache, v_cache, pos)
            new_k, new_v = self._store_full(k, v, k_cache, v_cache, pos)
        else:
            out = self._prefill_window(q, ka, va, k_cache, v_cache, pos)
            new_k, new_v = self._store_window(k, v, k_cache, v_cache, pos, new_pos)
        if bad is not None:
            out = poison(out, bad, self.window_size, torch.arange(length, device=x.device))
        return self._merge(out), (new_k, new_v, new_pos, *extra)

    def _prefill_full(
        self, q: Tensor, k: Tensor, v: Tensor, k_cache: Tensor, v_cache: Tensor, pos: Tensor
    ) -> Tensor:
        seen = int(pos.max())
        if seen == 0:
            return causal_attention(q, k, v)
        return cached_attention(q, k, v, k_cache[:, :, :seen], v_cache[:, :, :seen], pos)

    def _store_full(
        self, k: Tensor, v: Tensor, k_cache: Tensor, v_cache: Tensor, pos: Tensor
    ) -> tuple[Tensor, Tensor]:
        """The cache with the chunk's keys at each row's positions (grown by doubling)."""
        length = k.shape[2]
        capacity = k_cache.shape[2]
        while capacity < int(pos.max()) + length:
            capacity *= 2
        slots = (pos.unsqueeze(1) + torch.arange(length, device=pos.device)).view(-1, 1, length, 1)
        slots = slots.expand(-1, self.num_kv_heads, -1, self.head_dim)
        return _grow(k_cache, capacity).scatter_(2, slots, k), _grow(v_cache, capacity).scatter_(
            2, slots, v
        )

    def _chronological(self, cache: Tensor, pos: Tensor) -> Tensor:
        """The ring buffer in time order: entry ``c`` holds position ``pos - window + c``."""
        window = cache.shape[2]
        return _gather_slots(
            cache, (pos.unsqueeze(1) + torch.arange(window, device=pos.device)) % window
        )

    def _prefill_window(
        self, q: Tensor, k: Tensor, v: Tensor, k_cache: Tensor, v_cache: Tensor, pos: Tensor
    ) -> Tensor:
        assert self.window_size is not None
        prev_k, prev_v = self._chronological(k_cache, pos), self._chronological(v_cache, pos)
        return banded_attention(q, k, v, self.window_size, prev_k=prev_k, prev_v=prev_v, start=pos)

    def _store_window(
        self, k: Tensor, v: Tensor, k_cache: Tensor, v_cache: Tensor, pos: Tensor, new_pos: Tensor
    ) -> tuple[Tensor, Tensor]:
        """The new ring buffer: the last ``window`` keys, position ``s`` in slot ``s % window``."""
        window = k_cache.shape[2]
        ring = (torch.arange(window, device=pos.device) - new_pos.unsqueeze(1)) % window  # [B, w]
        stored = []
        for cache, new in ((k_cache, k), (v_cache, v)):
            last = torch.cat((self._chronological(cache, pos), new), 2)[:, :, -window:]
            stored.append(_gather_slots(last, ring))
        return stored[0], stored[1]


def _gather_slots(cache: Tensor, index: Tensor) -> Tensor:
    """``out[b, :, j] = cache[b, :, index[b, j]]`` for ``cache [B, kvh, C, d]``."""
    batch, heads, _, dim = cache.shape
    expanded = index.view(batch, 1, -1, 1).expand(batch, heads, index.shape[1], dim)
    return cache.gather(2, expanded)


def _grow(cache: Tensor, capacity: int) -> Tensor:
    """``cache [B, kvh, n, d]`` copied into a zero buffer of ``capacity >= n`` slots."""
    batch, heads, n, dim = cache.shape
    new = cache.new_zeros(batch, heads, capacity, dim)
    new[:, :, :n] = cache
    return new


def make_bodies(o: AttentionOptions, hidden_size: int) -> list[nn.Module]:
    """The attention body, then (unless ``ffn_expand_factor`` is 0) its feed-forward body."""
    ffn = ("ffn_expand_factor", "ffn_activation")
    attention = SlidingWindowAttention(hidden_size, **option_kwargs(o, exclude=ffn))
    if not o.ffn_expand_factor:
        return [attention]
    return [attention, FeedForward(hidden_size, o.ffn_expand_factor, activation=o.ffn_activation)]

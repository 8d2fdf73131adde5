"""Sliding-window causal multi-head attention with rotary embeddings and QK-norm.

The body maps ``[B, L, H] -> [B, L, H]``: q, k, v projections ``H → heads·head_dim``, an optional
per-head QK LayerNorm, rotary position embeddings on q and k (absolute positions), a causal band
mask (query ``t`` sees keys ``t-window+1 .. t``), and an output projection ``heads·head_dim → H``.

Time and memory are ``O(L·window)``: queries are cut into blocks of ``window`` positions and each
block attends to its own keys and to those of the previous block (``2·window`` keys), under a
per-block boolean mask; all blocks go through one ``scaled_dot_product_attention`` call.

Decoding state: ``(k_cache, v_cache, pos)`` with ``k_cache, v_cache: [B, heads, window, head_dim]``
a ring buffer (keys stored after rotary; position ``s`` lives in slot ``s % window``) and ``pos`` a
0-dim int64 tensor, the number of tokens seen (shared by the batch). With ``window_size=None``
(full causal attention) the same layout is used with a buffer that grows: its capacity starts at
``initial_cache_len`` and doubles whenever it is full.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from hybridzoo.nn import FeedForward

State = tuple[Tensor, Tensor, Tensor]

#: Initial capacity of the key/value cache when ``window_size=None`` (it doubles when full).
FULL_CACHE_INITIAL_LEN = 64


def _check_int(name: str, value: object, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int >= {minimum}, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return value


def rotate_half(x: Tensor) -> Tensor:
    """``[x1, x2] -> [-x2, x1]`` over the last dim (pairs ``(i, i + d/2)`` rotate together)."""
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


class SlidingWindowAttention(nn.Module):
    """Sliding-window causal multi-head self-attention (a body: no outer norm or residual).

    Args:
        hidden_size: model width ``H``.
        num_heads: number of heads.
        head_dim: width of each head (even: rotary rotates pairs of channels).
        window_size: each query sees itself and the ``window_size - 1`` previous positions;
            ``None`` = full causal attention (``O(L²)`` time, a growing decoding cache).
        qk_norm: apply a LayerNorm over ``head_dim`` (learned weight and bias, eps ``1e-5``, one
            for q and one for k, shared by all heads) to q and k before rotary, as Edifice's
            per-head QK LayerNorm does. ``4·head_dim`` parameters.
        rope_base: rotary base; channel pair ``(i, i + head_dim/2)`` rotates by angle
            ``t · rope_base^(-2i/head_dim)`` at absolute position ``t``.
        bias: biases on the four projections.

    Parameter count: :func:`hybridzoo_plugins.attention.formulas.attention_param_count`.
    """

    def __init__(
        self,
        hidden_size: int,
        *,
        num_heads: int = 4,
        head_dim: int = 64,
        window_size: int | None = 60,
        qk_norm: bool = True,
        rope_base: float = 10000.0,
        bias: bool = False,
    ) -> None:
        super().__init__()
        _check_int("hidden_size", hidden_size, 1)
        _check_int("num_heads", num_heads, 1)
        _check_int("head_dim", head_dim, 2)
        if head_dim % 2:
            raise ValueError(
                f"head_dim must be even (rotary rotates channel pairs), got {head_dim}"
            )
        if window_size is not None:
            _check_int("window_size", window_size, 1)
        for name, flag in (("qk_norm", qk_norm), ("bias", bias)):
            if not isinstance(flag, bool):
                raise TypeError(f"{name} must be a bool, got {flag!r}")
        if isinstance(rope_base, bool) or not isinstance(rope_base, (int, float)):
            raise TypeError(f"rope_base must be a positive number, got {rope_base!r}")
        if not rope_base > 0 or not math.isfinite(rope_base):
            raise ValueError(f"rope_base must be a positive finite number, got {rope_base}")
        self.hidden_size = hidden_size
        self.num_heads = num_heads
        self.head_dim = head_dim
        self.window_size = window_size
        self.rope_base = float(rope_base)
        self.initial_cache_len = FULL_CACHE_INITIAL_LEN  # used when window_size is None
        inner = num_heads * head_dim
        self.q_proj = nn.Linear(hidden_size, inner, bias=bias)
        self.k_proj = nn.Linear(hidden_size, inner, bias=bias)
        self.v_proj = nn.Linear(hidden_size, inner, bias=bias)
        self.o_proj = nn.Linear(inner, hidden_size, bias=bias)
        self.q_norm: nn.Module = nn.LayerNorm(head_dim) if qk_norm else nn.Identity()
        self.k_norm: nn.Module = nn.LayerNorm(head_dim) if qk_norm else nn.Identity()

    # ------------------------------------------------------------------ helpers
    def _rotary(self, positions: Tensor, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
        """cos and sin tables ``[L, head_dim]`` for float ``positions [L]``."""
        half = self.head_dim // 2
        exponents = torch.arange(half, device=positions.device, dtype=positions.dtype) / half
        inv_freq = self.rope_base ** (-exponents)  # [half]
        angles = positions[:, None] * inv_freq[None, :]  # [L, half]
        angles = torch.cat((angles, angles), dim=-1)  # [L, head_dim]
        return angles.cos().to(dtype), angles.sin().to(dtype)

    def _project(self, x: Tensor, start: Tensor | int) -> tuple[Tensor, Tensor, Tensor]:
        """q, k, v ``[B, heads, L, head_dim]`` for ``x [B, L, H]`` at positions ``start + 0..L-1``.

        q and k are normalised (QK-norm) and rotated (rotary); ``start`` is an int or a 0-dim
        integer tensor.
        """
        batch, length, _ = x.shape
        shape = (batch, length, self.num_heads, self.head_dim)
        q = self.q_norm(self.q_proj(x).view(shape)).transpose(1, 2)  # [B, nh, L, hd]
        k = self.k_norm(self.k_proj(x).view(shape)).transpose(1, 2)
        v = self.v_proj(x).view(shape).transpose(1, 2)
        angle_dtype = torch.promote_types(x.dtype, torch.float32)
        positions = torch.arange(length, device=x.device, dtype=angle_dtype) + start  # [L]
        cos, sin = self._rotary(positions, x.dtype)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        return q, k, v

    def _merge(self, out: Tensor) -> Tensor:
        """``[B, heads, L, head_dim] -> [B, L, H]`` through the output projection."""
        batch, _, length, _ = out.shape
        out = out.transpose(1, 2).reshape(batch, length, self.num_heads * self.head_dim)
        return self.o_proj(out)

    # ------------------------------------------------------------------ protocol
    def forward(self, x: Tensor) -> Tensor:
        """``x [B, L, H] -> [B, L, H]`` from a fresh start (position 0)."""
        q, k, v = self._project(x, 0)
        if self.window_size is None:
            out = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        else:
            out = banded_attention(q, k, v, self.window_size)
        return self._merge(out)

    def init_state(self, batch_size: int) -> State:
        """Empty cache: ``k, v [B, heads, capacity, head_dim]`` zeros and ``pos`` = 0 (int64).

        ``capacity`` is ``window_size``, or ``initial_cache_len`` when ``window_size`` is None.
        """
        _check_int("batch_size", batch_size, 1)
        weight = self.q_proj.weight
        capacity = self.window_size if self.window_size is not None else self.initial_cache_len
        shape = (batch_size, self.num_heads, capacity, self.head_dim)
        k_cache = torch.zeros(shape, device=weight.device, dtype=weight.dtype)
        v_cache = torch.zeros(shape, device=weight.device, dtype=weight.dtype)
        pos = torch.zeros((), device=weight.device, dtype=torch.long)
        return k_cache, v_cache, pos

    def step(self, x_t: Tensor, state: State) -> tuple[Tensor, State]:
        """One token ``x_t [B, H] -> y_t [B, H]``.

        Updates the state in place (the ring buffer slot ``pos % window`` and ``pos``) and returns
        it. With ``window_size=None`` the buffer is replaced by one twice as large when full (the
        only allocation; amortised O(1) per step, and the one place that reads ``pos`` on the host).
        """
        k_cache, v_cache, pos = state
        if self.window_size is None and int(pos) >= k_cache.shape[2]:
            k_cache, v_cache = _grow(k_cache, v_cache, 2 * k_cache.shape[2])
        capacity = k_cache.shape[2]
        q, k, v = self._project(x_t.unsqueeze(1), pos)  # [B, nh, 1, hd]
        slot = torch.remainder(pos, capacity).view(1)
        k_cache.index_copy_(2, slot, k)
        v_cache.index_copy_(2, slot, v)
        # Slots 0..pos are filled; once pos >= capacity every slot is (keys at most window old).
        valid = (torch.arange(capacity, device=pos.device) <= pos).view(1, 1, 1, capacity)
        out = F.scaled_dot_product_attention(q, k_cache, v_cache, attn_mask=valid)
        pos.add_(1)
        return self._merge(out).squeeze(1), (k_cache, v_cache, pos)

    def prefill(self, x: Tensor, state: State | None = None) -> tuple[Tensor, State]:
        """Forward ``x [B, L, H]`` continuing from ``state`` (None = fresh); returns the new state.

        The new queries also see the cached keys (those within the window). The given state is not
        modified: a new state is returned.
        """
        if state is None:
            state = self.init_state(x.shape[0])
        k_cache, v_cache, pos = state
        length = x.shape[1]
        q, k, v = self._project(x, pos)
        if self.window_size is None:
            start = int(pos)
            prev_k, prev_v = k_cache[:, :, :start], v_cache[:, :, :start]
            out = full_attention(q, k, v, prev_k, prev_v)
            capacity = k_cache.shape[2]
            while capacity < start + length:
                capacity *= 2
            new_k, new_v = _grow(torch.cat((prev_k, k), 2), torch.cat((prev_v, v), 2), capacity)
            return self._merge(out), (new_k, new_v, pos + length)
        window = self.window_size
        # Cache in chronological order: entry c holds position pos - window + c (< 0: unused).
        chrono = torch.remainder(pos + torch.arange(window, device=pos.device), window)
        prev_k = k_cache.index_select(2, chrono)  # [B, nh, w, hd]
        prev_v = v_cache.index_select(2, chrono)
        out = banded_attention(q, k, v, window, prev_k=prev_k, prev_v=prev_v, start=pos)
        # New ring buffer: last `window` keys, position s in slot s % window.
        new_pos = pos + length
        last_k = torch.cat((prev_k, k), 2)[:, :, -window:]  # positions new_pos - w + c
        last_v = torch.cat((prev_v, v), 2)[:, :, -window:]
        ring = torch.remainder(torch.arange(window, device=pos.device) - new_pos, window)
        new_k = last_k.index_select(2, ring)
        new_v = last_v.index_select(2, ring)
        return self._merge(out), (new_k, new_v, new_pos)


def _grow(k: Tensor, v: Tensor, capacity: int) -> tuple[Tensor, Tensor]:
    """Copy ``k, v [B, nh, n, hd]`` into zero buffers of ``capacity >= n`` entries."""
    batch, heads, n, dim = k.shape
    new_k = k.new_zeros(batch, heads, capacity, dim)
    new_v = v.new_zeros(batch, heads, capacity, dim)
    new_k[:, :, :n] = k
    new_v[:, :, :n] = v
    return new_k, new_v


def full_attention(q: Tensor, k: Tensor, v: Tensor, prev_k: Tensor, prev_v: Tensor) -> Tensor:
    """Causal attention of ``q, k, v [B, nh, L, hd]`` after ``P`` keys ``prev_* [B, nh, P, hd]``.

    Query ``i`` (absolute position ``P + i``) sees every earlier key and new keys ``0..i``.
    """
    n_prev, length = prev_k.shape[2], q.shape[2]
    if n_prev == 0:
        return F.scaled_dot_product_attention(q, k, v, is_causal=True)
    keys = torch.cat((prev_k, k), 2)  # [B, nh, P + L, hd]
    values = torch.cat((prev_v, v), 2)
    rows = torch.arange(length, device=q.device)[:, None]
    cols = torch.arange(n_prev + length, device=q.device)[None, :]
    mask = (cols <= rows + n_prev)[None, None]  # [1, 1, L, P + L]
    return F.scaled_dot_product_attention(q, keys, values, attn_mask=mask)


def banded_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    window: int,
    *,
    prev_k: Tensor | None = None,
    prev_v: Tensor | None = None,
    start: Tensor | int = 0,
) -> Tensor:
    """Sliding-window causal attention in ``O(L·window)`` time and memory.

    ``q, k, v: [B, nh, L, hd]`` at absolute positions ``start + 0..L-1``; query ``t`` sees keys
    ``t-window+1 .. t`` (and none before position 0). ``prev_k, prev_v: [B, nh, window, hd]`` hold
    the keys of positions ``start-window .. start-1`` in order (entries at negative positions are
    ignored); ``None`` means a fresh start (``start`` must then be 0).

    Queries are cut into ``nb`` blocks of ``qb`` positions (``qb = window``, or ``L`` when
    ``L <= window``); block ``j`` attends to the ``window + qb`` keys that precede and overlap it:
    the previous ``window`` keys and its own ``qb``. A fresh start with ``L <= window`` is plain
    causal attention.
    """
    batch, heads, length, dim = q.shape
    if prev_k is None or prev_v is None:
        if length <= window:
            return F.scaled_dot_product_attention(q, k, v, is_causal=True)
        prev_k = q.new_zeros(batch, heads, window, dim)
        prev_v = prev_k
    qb = window if length > window else length
    nb = -(-length // qb)
    span = window + qb
    device = q.device
    # Keys: [window previous | L new | zero padding to nb·qb]; key index c of block j is at
    # position start - window + j·qb + c.
    keys = q.new_empty(batch, heads, window + nb * qb, dim)
    values = q.new_empty(batch, heads, window + nb * qb, dim)
    for buffer, before, new in ((keys, prev_k, k), (values, prev_v, v)):
        buffer[:, :, :window] = before
        buffer[:, :, window : window + length] = new
        buffer[:, :, window + length :] = 0.0
    keys = keys.unfold(2, span, qb).transpose(-1, -2)  # [B, nh, nb, w + qb, hd] (overlapping)
    values = values.unfold(2, span, qb).transpose(-1, -2)
    queries = F.pad(q, (0, 0, 0, nb * qb - length)).view(batch, heads, nb, qb, dim)
    # Mask [1, nb, qb, w + qb]: query i of block j (position start + j·qb + i) sees key c iff
    # i < c <= i + window (the band) and the key's position is >= 0. (A 4-d mask lets torch use
    # its fused CPU kernel, which never materialises the scores.)
    i = torch.arange(qb, device=device)[None, :, None]
    c = torch.arange(span, device=device)[None, None, :]
    first = torch.arange(nb, device=device)[:, None, None] * qb
    mask = (c > i) & (c <= i + window) & (first + c >= window - start)
    out = F.scaled_dot_product_attention(
        queries.reshape(batch * heads, nb, qb, dim),
        keys.reshape(batch * heads, nb, span, dim),
        values.reshape(batch * heads, nb, span, dim),
        attn_mask=mask.unsqueeze(0),
    )  # [B·nh, nb, qb, hd]
    return out.view(batch, heads, nb * qb, dim)[:, :, :length]


def make_attention_bodies(
    hidden_size: int,
    *,
    num_heads: int = 4,
    head_dim: int = 64,
    window_size: int | None = 60,
    qk_norm: bool = True,
    rope_base: float = 10000.0,
    bias: bool = False,
    ffn_expand_factor: int = 4,
) -> list[nn.Module]:
    """The two bodies of an attention layer: ``[SlidingWindowAttention, FeedForward]``.

    Each is wrapped by the core in its own pre-norm residual block. Parameter count:
    :func:`hybridzoo_plugins.attention.formulas.param_count`.
    """
    _check_int("ffn_expand_factor", ffn_expand_factor, 1)
    attention = SlidingWindowAttention(
        hidden_size,
        num_heads=num_heads,
        head_dim=head_dim,
        window_size=window_size,
        qk_norm=qk_norm,
        rope_base=rope_base,
        bias=bias,
    )
    return [attention, FeedForward(hidden_size, ffn_expand_factor)]

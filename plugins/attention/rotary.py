"""Rotary position embeddings (RoPE), in the ``rotate_half`` convention of GPT-NeoX, Llama and
transformers: channel pair ``(i, i + d/2)`` rotates by ``t · base^(-2i/d)`` at position ``t``.

The angles are computed in float64 (float32 where a device has no float64) whatever the
activations' dtype: in bfloat16 an angle ``t · θ`` past ``t = 256`` is off by more than its own
spacing, which wrecks attention at long range. The rotation itself runs in float32 or better.
"""

from __future__ import annotations

import functools

import torch
from torch import Tensor


def _angle_dtype(device: torch.device) -> torch.dtype:
    return torch.float32 if device.type == "mps" else torch.float64


@functools.lru_cache(maxsize=64)
def _frequencies(head_dim: int, base: float, device: torch.device) -> Tensor:
    """``base^(-2i/d)`` for ``i < d/2``, twice (``[d]``, the angle dtype): the same for every
    call of a layer, so computed once (a decoding step would otherwise spend more on this than
    on its angles)."""
    dtype = _angle_dtype(device)
    half = head_dim // 2
    with torch.inference_mode(False), torch.no_grad():  # a normal tensor, usable anywhere
        inv_freq = base ** (-(torch.arange(half, device=device, dtype=dtype) / half))
        return torch.cat((inv_freq, inv_freq))


def rotary_tables(
    positions: Tensor, head_dim: int, base: float, dtype: torch.dtype
) -> tuple[Tensor, Tensor]:
    """``cos, sin [..., L, head_dim]`` (in ``dtype``) for integer ``positions [..., L]``."""
    inv_freq = _frequencies(head_dim, float(base), positions.device)
    angles = positions.to(inv_freq.dtype)[..., None] * inv_freq  # [..., L, head_dim]
    return angles.cos().to(dtype), angles.sin().to(dtype)


def rotate_half(x: Tensor) -> Tensor:
    """``[x1, x2] -> [-x2, x1]`` over the last dim."""
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


def apply_rotary(q: Tensor, k: Tensor, positions: Tensor, base: float) -> tuple[Tensor, Tensor]:
    """Rotate ``q [B, heads, L, d]`` and ``k [B, kv_heads, L, d]`` at ``positions`` (``[L]``, or
    ``[B, L]`` per row); one table serves both."""
    compute = torch.promote_types(q.dtype, torch.float32)
    cos, sin = rotary_tables(positions, q.shape[-1], base, compute)
    if positions.dim() == 2:  # one row of positions per batch row: broadcast over heads
        cos, sin = cos.unsqueeze(1), sin.unsqueeze(1)

    def rotate(x: Tensor) -> Tensor:
        xc = x.to(compute)
        return (xc * cos + rotate_half(xc) * sin).to(x.dtype)

    return rotate(q), rotate(k)

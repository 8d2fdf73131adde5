"""The standard (Vaswani) sinusoidal position encoding, computed in float64."""

from __future__ import annotations

import functools

import torch

__all__ = ["sinusoidal_encoding"]


def sinusoidal_encoding(positions: torch.Tensor, width: int, dtype: torch.dtype) -> torch.Tensor:
    """``[..., width]`` (in ``dtype``) for integer ``positions [...]``: ``sin`` of
    ``t / 10000^(2i/width)`` in the even channels, ``cos`` in the odd ones."""
    angle = positions.to(torch.float64)[..., None] / _divisors(width, positions.device)
    pe = torch.empty(*positions.shape, width, device=positions.device, dtype=torch.float64)
    pe[..., 0::2] = torch.sin(angle)
    pe[..., 1::2] = torch.cos(angle[..., : width // 2])
    return pe.to(dtype)


@functools.lru_cache(maxsize=16)
def _divisors(width: int, device: torch.device) -> torch.Tensor:
    """``10000^(2i/width)`` for ``i < ceil(width/2)`` (float64): the same for every call of a
    model, so computed once (a decoding step would otherwise spend more on it than on its
    angles)."""
    with torch.inference_mode(False), torch.no_grad():  # a normal tensor, usable anywhere
        i = torch.arange(0, width, 2, device=device, dtype=torch.float64)
        return torch.pow(10000.0, i / width)

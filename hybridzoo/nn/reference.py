"""Pieces of the slow time-step references that several layers' ``reference.py`` share: the
activations written out, the reset at document starts of packed rows, and the window of a
depthwise causal convolution fed one position at a time.

They are deliberately plain (no kernel, no ``torch.nn.functional``), so that a reference built
from them shares no code with the fast modules it checks. Use float64 for tight comparisons.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["ConvWindow", "continuing", "forget", "silu", "softplus"]


def silu(x: Tensor) -> Tensor:
    """``x · σ(x)``, written out."""
    return x / (1 + torch.exp(-x))


def softplus(x: Tensor) -> Tensor:
    """``log(1 + eˣ)``, written out (without overflow)."""
    return torch.logaddexp(x, torch.zeros_like(x))


def continuing(seq_idx: Tensor | None, t: int) -> Tensor | None:
    """``[B]`` bool: the rows whose position ``t`` continues the document of position ``t - 1``
    (``seq_idx [B, T]`` numbers packed documents); ``None`` where nothing starts anew (no
    ``seq_idx``, or ``t == 0``)."""
    if seq_idx is None or t == 0:
        return None
    return seq_idx[:, t] == seq_idx[:, t - 1]


def forget(keep: Tensor | None, x: Tensor) -> Tensor:
    """``x`` (batch first) with the rows where ``keep [B]`` is False set to zero; ``x`` itself
    when ``keep`` is ``None``. A ``where``, not a product: a NaN of the previous document never
    crosses into the next."""
    if keep is None:
        return x
    return torch.where(keep.view(-1, *[1] * (x.dim() - 1)), x, 0.0)


class ConvWindow:
    """The last inputs of a depthwise causal convolution of ``kernel_size`` taps over ``C``
    channels, fed one position at a time.

    ``window [B, C, K-1]`` holds the previous ``K - 1`` inputs, oldest first (the layers' step
    state). ``window(x_t, weight, bias)`` convolves ``x_t [B, C]`` with them (``weight [C, K]``)
    and then keeps ``x_t`` as the newest input; :meth:`forget` zeroes rows at document starts;
    :attr:`state` is the window now.
    """

    def __init__(self, window: Tensor) -> None:
        self._past = list(window.unbind(-1))
        self._empty = window.new_zeros(window.shape[0], window.shape[1], 0)

    @classmethod
    def zeros(cls, like: Tensor, batch: int, channels: int, kernel_size: int) -> ConvWindow:
        """The window before any input (zeros), in ``like``'s dtype and device."""
        return cls(like.new_zeros(batch, channels, kernel_size - 1))

    def __call__(self, x_t: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
        """``Σ_j weight[:, j] · input[t - K + 1 + j] (+ bias)`` over the last K inputs."""
        taps = [*self._past, x_t]
        out = (torch.stack(taps, dim=-1) * weight).sum(-1)
        self._past = taps[1:]
        return out if bias is None else out + bias

    def forget(self, keep: Tensor | None) -> None:
        """Zero the past of the rows where ``keep [B]`` is False (see :func:`forget`)."""
        self._past = [forget(keep, p) for p in self._past]

    @property
    def state(self) -> Tensor:
        """The last ``K - 1`` inputs ``[B, C, K-1]``, oldest first."""
        return torch.stack(self._past, dim=-1) if self._past else self._empty

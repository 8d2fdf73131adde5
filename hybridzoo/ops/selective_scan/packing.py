"""Packed documents (``seq_idx``): validation and the boundaries both backends and the references
share.

``seq_idx [B, T]`` numbers the documents packed in each row, non-decreasing along T.  Where
``seq_idx[b, t] != seq_idx[b, t-1]`` a new document starts: the scan's state restarts from zero
(``initial_state`` belongs to the row's first document only) and the causal convolution reads
zeros instead of the previous document's inputs (``initial_window`` likewise belongs to the first
document).  So a packed call equals separate calls on each document (outputs, gradients).
"""

from __future__ import annotations

import torch
from torch import Tensor

from hybridzoo.errors import ShapeError

__all__ = ["check_seq_idx", "document_starts", "first_readable"]


def check_seq_idx(
    seq_idx: Tensor | None, batch: int, length: int, device: torch.device
) -> Tensor | None:
    """Validates the packing argument; returns it as a contiguous int64 tensor (or None).

    Raises :class:`~hybridzoo.errors.ShapeError` unless ``seq_idx`` is an integer tensor of
    shape ``[batch, length]`` on ``device``, non-decreasing along T in every row.
    """
    if seq_idx is None:
        return None
    if not isinstance(seq_idx, Tensor):
        raise ShapeError(
            f"seq_idx must be an integer torch.Tensor [B, T], got {type(seq_idx).__name__}"
        )
    if seq_idx.dtype.is_floating_point or seq_idx.dtype.is_complex or seq_idx.dtype == torch.bool:
        raise ShapeError(f"seq_idx must have an integer dtype (int32, int64), got {seq_idx.dtype}")
    if tuple(seq_idx.shape) != (batch, length):
        raise ShapeError(
            f"seq_idx must have shape [B, T] = {(batch, length)}, got {tuple(seq_idx.shape)}"
        )
    if seq_idx.device != device:
        raise ShapeError(f"seq_idx must be on the inputs' device {device}, got {seq_idx.device}")
    seq = seq_idx.to(torch.int64).contiguous()
    falls = seq[:, 1:] < seq[:, :-1]
    if bool(falls.any()):
        b, t = (int(i) for i in falls.nonzero()[0])
        raise ShapeError(
            f"seq_idx must be non-decreasing along T (documents numbered in order), but row {b} "
            f"goes from {int(seq[b, t])} at t={t} to {int(seq[b, t + 1])} at t={t + 1}"
        )
    return seq


def document_starts(seq_idx: Tensor) -> Tensor:
    """``[B, T]`` bool: True where a document other than the row's first starts."""
    starts = torch.zeros_like(seq_idx, dtype=torch.bool)
    starts[:, 1:] = seq_idx[:, 1:] != seq_idx[:, :-1]
    return starts


def first_readable(seq_idx: Tensor | None, batch: int, length: int, size: int) -> Tensor:
    """``[B, T]`` int64: the first position that position t of a causal convolution with
    ``size`` = K-1 past inputs may read: ``-size`` (the initial window) in a row's first document,
    the document's start in the others."""
    if seq_idx is None:
        return torch.full((batch, length), -size, dtype=torch.int64)
    positions = torch.arange(length, device=seq_idx.device).expand(batch, length)
    start = torch.where(document_starts(seq_idx), positions, 0).cummax(dim=1).values
    return torch.where(start == 0, -size, start)

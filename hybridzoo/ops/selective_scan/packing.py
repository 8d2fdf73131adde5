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
from hybridzoo.ops._common import document_starts as _family_starts

__all__ = ["check_seq_idx", "document_starts", "first_readable"]


def check_seq_idx(
    seq_idx: Tensor | None, batch: int, length: int, device: torch.device
) -> Tensor | None:
    """Validates the packing argument; returns it as a contiguous int64 tensor (or None).

    Raises :class:`~hybridzoo.errors.ShapeError` unless ``seq_idx`` is an integer tensor of
    shape ``[batch, length]`` on ``device``, non-decreasing along T in every row (the checks of
    the whole kernel family, :func:`hybridzoo.ops._common.document_starts`).
    """
    if seq_idx is None:
        return None
    _family_starts(seq_idx, batch, length)
    if seq_idx.device != device:
        raise ShapeError(f"seq_idx must be on the inputs' device {device}, got {seq_idx.device}")
    return seq_idx.to(torch.int64).contiguous()


def document_starts(seq_idx: Tensor) -> Tensor:
    """``[B, T]`` bool: True where a document other than the row's first starts."""
    return _family_starts(seq_idx, *seq_idx.shape)


def first_readable(seq_idx: Tensor | None, batch: int, length: int, size: int) -> Tensor:
    """``[B, T]`` int64: the first position that position t of a causal convolution with
    ``size`` = K-1 past inputs may read: ``-size`` (the initial window) in a row's first document,
    the document's start in the others."""
    if seq_idx is None:
        return torch.full((batch, length), -size, dtype=torch.int64)
    positions = torch.arange(length, device=seq_idx.device).expand(batch, length)
    start = torch.where(document_starts(seq_idx), positions, 0).cummax(dim=1).values
    return torch.where(start == 0, -size, start)

"""Packed documents: several sequences concatenated in one row, without padding between them.

The boundaries come in one of two forms:

- ``seq_idx [B, L]``: an integer tensor numbering the documents of each row, non-decreasing along
  the row (``[[0, 0, 0, 1, 1, 2], ...]``); where ``seq_idx[b, t] != seq_idx[b, t-1]`` a new
  document starts. This is the form every body and kernel takes (mamba_ssm's and the kernels of
  :mod:`hybridzoo.ops`).
- ``cu_seqlens [N + 1]``: the batch-1 form of flash-attn and fla (cumulative document lengths,
  ``0`` first and ``L`` last, strictly increasing: ``[0, 3, 5, 6]``), turned into ``seq_idx`` by
  :func:`as_seq_idx`.

``HybridModel.forward(x, seq_idx=...)`` validates them once (:class:`~hybridzoo.PackingError`
otherwise) and hands ``seq_idx`` to every body of a layer that declares
``capabilities.packing``; at each boundary every layer starts afresh, so the packed forward
equals the separate forwards of the documents. The helpers below serve bodies
(:func:`document_starts`, :func:`document_positions`) and training loops
(:func:`pack_sequences`, :func:`next_token_targets`).
"""

from __future__ import annotations

from collections.abc import Sequence

import attrs
import torch
import torch.nn.functional as F
from torch import Tensor

from hybridzoo.errors import PackingError, ShapeError
from hybridzoo.ops._common import document_starts as _later_starts
from hybridzoo.validate import at_least

__all__ = [
    "IGNORE_INDEX",
    "PackedBatch",
    "as_seq_idx",
    "check_seq_idx",
    "document_positions",
    "document_starts",
    "next_token_targets",
    "pack_rows",
    "pack_sequences",
    "packed_seq_idx",
]

#: The target of a position that is not scored (PyTorch's and transformers' convention).
IGNORE_INDEX = -100


def check_seq_idx(
    seq_idx: object, batch: int, length: int, device: torch.device | None = None
) -> Tensor:
    """``seq_idx`` validated as the document numbers of a ``[batch, length]`` input (an integer
    tensor of that shape, on ``device`` when given, non-decreasing along each row) and returned
    as a contiguous int64 tensor; :class:`~hybridzoo.PackingError` naming the problem otherwise."""
    try:
        _later_starts(seq_idx, batch, length)  # type: ignore[arg-type]
    except ShapeError as exc:
        raise PackingError(str(exc)) from None
    assert isinstance(seq_idx, Tensor)
    if device is not None and seq_idx.device != torch.device(device):
        raise PackingError(
            f"seq_idx is on {seq_idx.device} but the input is on {device}: move it "
            f"(seq_idx.to({str(device)!r}))"
        )
    return seq_idx.to(torch.int64).contiguous()


def _cu_seqlens(cu_seqlens: object, length: int) -> Tensor:
    """``cu_seqlens`` validated as the cumulative lengths of documents covering ``length``."""
    if isinstance(cu_seqlens, Sequence) and not isinstance(cu_seqlens, str):
        cu_seqlens = torch.tensor(list(cu_seqlens)) if cu_seqlens else torch.zeros(0)
    if not isinstance(cu_seqlens, Tensor):
        raise PackingError(
            f"cu_seqlens must be a 1-d integer tensor [num_documents + 1], got "
            f"{type(cu_seqlens).__name__}"
        )
    if cu_seqlens.is_floating_point() or cu_seqlens.is_complex() or cu_seqlens.dtype == torch.bool:
        raise PackingError(f"cu_seqlens must be an integer tensor, got dtype {cu_seqlens.dtype}")
    if cu_seqlens.dim() != 1 or cu_seqlens.numel() < 2:
        raise PackingError(
            "cu_seqlens must be 1-d with num_documents + 1 >= 2 entries (0 first, the sequence "
            f"length last), got shape {list(cu_seqlens.shape)}"
        )
    first, last = int(cu_seqlens[0]), int(cu_seqlens[-1])
    if first != 0 or last != length:
        raise PackingError(
            f"cu_seqlens must start at 0 and end at the sequence length {length}, got "
            f"{first} .. {last}"
        )
    lengths = cu_seqlens.diff()
    if bool((lengths < 1).any()):
        i = int((lengths < 1).nonzero()[0])
        raise PackingError(
            "cu_seqlens must be strictly increasing (every document at least one position), "
            f"got {int(cu_seqlens[i])} then {int(cu_seqlens[i + 1])} at entries {i}, {i + 1}"
        )
    return cu_seqlens


def as_seq_idx(
    batch: int,
    length: int,
    *,
    seq_idx: object = None,
    cu_seqlens: object = None,
    device: torch.device | None = None,
) -> Tensor | None:
    """The validated ``seq_idx [batch, length]`` (int64) of an input, from either form, or
    ``None`` when neither is given; both at once, or ``cu_seqlens`` for a batch other than 1, is
    a :class:`~hybridzoo.PackingError`."""
    if cu_seqlens is None:
        return None if seq_idx is None else check_seq_idx(seq_idx, batch, length, device)
    if seq_idx is not None:
        raise PackingError("give seq_idx or cu_seqlens, not both (they say the same thing)")
    if batch != 1:
        raise PackingError(
            f"cu_seqlens describes one row (batch 1, as flash-attn's and fla's varlen inputs); "
            f"the input has batch {batch}: pass seq_idx [batch, seq_len] instead"
        )
    cu = _cu_seqlens(cu_seqlens, length).to(device=device, dtype=torch.int64)
    positions = torch.arange(length, device=cu.device)
    return torch.bucketize(positions, cu[1:], right=True).unsqueeze(0).contiguous()


def packed_seq_idx(
    x: Tensor,
    seq_idx: object,
    cu_seqlens: object,
    unsupported: Sequence[str] = (),
    output: str = "sequence",
) -> Tensor | None:
    """The validated ``seq_idx [B, L]`` of a packed model forward on ``x [B, L, ...]`` (``None``
    when neither form is given), refusing with a :class:`~hybridzoo.PackingError` the layers
    named in ``unsupported`` (they declare neither ``capabilities.packing`` nor
    ``positionwise``) and ``output="last"`` (one position per row cannot read several
    documents)."""
    if seq_idx is None and cu_seqlens is None:
        return None
    if unsupported:
        names = ", ".join(map(repr, unsupported))
        raise PackingError(
            f"packed documents (seq_idx/cu_seqlens) need layers that take them; {names} "
            f"declare{'s' if len(unsupported) == 1 else ''} neither capabilities.packing nor "
            "capabilities.positionwise: run each document on its own (or padded) instead"
        )
    if output == "last":
        raise PackingError(
            "output='last' reads the last position of each row, under packing the end of the "
            "row's last document only: build the model with output='sequence' and read each "
            "document's last position"
        )
    batch, length = x.shape[:2]
    return as_seq_idx(batch, length, seq_idx=seq_idx, cu_seqlens=cu_seqlens, device=x.device)


def document_starts(seq_idx: Tensor) -> Tensor:
    """``[B, L]`` bool: True at the first position of every document (position 0 included)."""
    starts = torch.ones_like(seq_idx, dtype=torch.bool)
    starts[:, 1:] = seq_idx[:, 1:] != seq_idx[:, :-1]
    return starts


def document_positions(seq_idx: Tensor) -> Tensor:
    """``[B, L]`` int64: each position's offset in its document (0 at every document start), the
    positions a rotary or sinusoidal encoding restarts from."""
    index = torch.arange(seq_idx.shape[1], device=seq_idx.device).expand(seq_idx.shape)
    first = torch.where(document_starts(seq_idx), index, 0).cummax(dim=1).values
    return index - first


def next_token_targets(
    input_ids: Tensor, seq_idx: Tensor | None = None, *, ignore_index: int = IGNORE_INDEX
) -> Tensor:
    """The next-token targets of ``input_ids [B, L]``: ``targets[:, t] = input_ids[:, t + 1]``,
    with ``ignore_index`` at the last position of each row and, given ``seq_idx``, at the last
    position of every document (whose next token starts another document)."""
    targets = F.pad(input_ids[:, 1:], (0, 1), value=ignore_index)
    if seq_idx is not None:
        crosses = F.pad(seq_idx[:, 1:] != seq_idx[:, :-1], (0, 1), value=True)
        targets = targets.masked_fill(crosses, ignore_index)
    return targets


def pack_rows(rows: Tensor, per_row: int) -> tuple[Tensor, Tensor]:
    """Sequences of one length, ``rows [N, L, ...]``, concatenated ``per_row`` at a time:
    ``[N / per_row, per_row · L, ...]`` and its ``seq_idx`` (int64, the j-th sequence of a row is
    its document j). ``N`` must be a multiple of ``per_row``."""
    per_row = at_least(1).check("per_row", per_row)
    count, length = rows.shape[:2]
    if count % per_row:
        raise PackingError(f"{count} sequences do not pack {per_row} per row: not a multiple")
    packed = rows.reshape(count // per_row, per_row * length, *rows.shape[2:])
    docs = torch.arange(per_row, device=rows.device).repeat_interleave(length)
    return packed, docs.expand(count // per_row, -1).contiguous()


@attrs.frozen
class PackedBatch:
    """Documents packed into rows (see :func:`pack_sequences`).

    Attributes:
        input_ids: ``[R, row_length]``; positions after a row's last document hold ``pad_id``.
        seq_idx: ``[R, row_length]`` int64 document numbers; a row's padding is one more document
            (so it never reaches the documents before it).
        targets: ``[R, row_length]`` next-token targets, :data:`IGNORE_INDEX` at the last
            position of every document and in the padding.
        documents: ``(row, start, length)`` of every packed piece, in order.
    """

    input_ids: Tensor
    seq_idx: Tensor
    targets: Tensor
    documents: tuple[tuple[int, int, int], ...]


def pack_sequences(
    sequences: Sequence[Sequence[int] | Tensor],
    row_length: int,
    *,
    pad_id: int = 0,
    ignore_index: int = IGNORE_INDEX,
) -> PackedBatch:
    """Pack token sequences into rows of ``row_length``, in order, each row filled before the
    next one starts; a sequence longer than what is left of a row continues in the next row
    as a new document (nothing is dropped). The last row is padded with ``pad_id``.

    The result feeds ``HybridLM.forward(input_ids, seq_idx=seq_idx)`` and a loss over
    ``targets`` (which scores no position across documents or in the padding).
    """
    row_length = at_least(1).check("row_length", row_length)
    flat: list[int] = []
    seq: list[int] = []
    documents: list[tuple[int, int, int]] = []
    doc = 0
    for i, sequence in enumerate(sequences):
        tokens = sequence.tolist() if isinstance(sequence, Tensor) else list(sequence)
        if not tokens:
            raise PackingError(f"sequence {i} is empty: a document has at least one token")
        while tokens:
            used = len(flat) % row_length
            if used == 0 and flat:
                doc = 0  # a fresh row numbers its documents from 0
            piece, tokens = tokens[: row_length - used], tokens[row_length - used :]
            documents.append((len(flat) // row_length, used, len(piece)))
            flat.extend(piece)
            seq.extend([doc] * len(piece))
            doc += 1
    if not flat:
        raise PackingError("no sequence to pack")
    padding = -len(flat) % row_length
    ids = torch.tensor(flat + [pad_id] * padding, dtype=torch.int64).view(-1, row_length)
    seq_idx = torch.tensor(seq + [doc] * padding, dtype=torch.int64).view(-1, row_length)
    targets = next_token_targets(ids, seq_idx, ignore_index=ignore_index)
    if padding:
        targets[-1, row_length - padding :] = ignore_index
    return PackedBatch(ids, seq_idx, targets, tuple(documents))

"""Causal attention without ``L×L`` scores: sliding-window (banded) and full, from a fresh start
or after cached keys, with grouped-query heads.

Layouts: queries ``[B, heads, L, d]``, keys and values ``[B, kv_heads, L, d]`` with
``heads = groups · kv_heads``; query head ``i`` reads kv head ``i // groups`` (transformers'
``repeat_kv`` order). Every attention goes through ``scaled_dot_product_attention`` in its fused
form (4-d tensors, a mask that is small or broadcast), which never materialises the scores; the
masks built here hold ``O(L·window)`` (banded) or ``O(block·keys)`` (full, after a cache) values.
Keys are never repeated per query head: a group's heads are folded into the query rows, or SDPA
reads the kv heads directly (``enable_gqa``).

Containment: SDPA computes the scores of masked keys too, so a NaN key at position ``s`` would
reach the outputs before ``s`` (``NaN + -inf`` is NaN). :func:`contain` zeroes non-finite keys
and values before the attention (a masked finite key contributes exactly 0) and
:func:`poison` gives NaN to the queries that do see one, as the attention itself would.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from hybridzoo.packing import document_positions

#: After a cache, full attention runs in blocks of queries whose mask holds at most this many
#: values (``B · block · keys``), so that no ``L×L`` tensor is built for a long prefill.
MASK_BUDGET = 1 << 22


def causal_attention(q: Tensor, k: Tensor, v: Tensor) -> Tensor:
    """Plain causal attention from position 0 (grouped-query heads read their kv head)."""
    return F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)


def _fold_groups(q: Tensor, kv_heads: int) -> Tensor:
    """``[B, heads, ..., n, d] -> [B, kv_heads, ..., groups·n, d]`` (a group's queries stacked)."""
    batch, heads = q.shape[:2]
    groups = heads // kv_heads
    inner = q.shape[2:-2]
    q = q.reshape(batch, kv_heads, groups, *q.shape[2:])  # [B, kvh, g, ..., n, d]
    q = q.movedim(2, -3)  # [B, kvh, ..., g, n, d]
    return q.reshape(batch, kv_heads, *inner, groups * q.shape[-2], q.shape[-1])


def _unfold_groups(out: Tensor, heads: int) -> Tensor:
    """The inverse of :func:`_fold_groups`."""
    batch, kv_heads = out.shape[:2]
    groups = heads // kv_heads
    inner = out.shape[2:-2]
    out = out.reshape(batch, kv_heads, *inner, groups, out.shape[-2] // groups, out.shape[-1])
    out = out.movedim(-3, 2)  # [B, kvh, g, ..., n, d]
    return out.reshape(batch, heads, *inner, out.shape[-2], out.shape[-1])


def banded_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    window: int,
    *,
    prev_k: Tensor | None = None,
    prev_v: Tensor | None = None,
    start: Tensor | None = None,
    seq_idx: Tensor | None = None,
) -> Tensor:
    """Sliding-window causal attention in ``O(L·window)`` time and memory.

    Query ``t`` sees keys ``t-window+1 .. t`` (none before position 0). ``prev_k, prev_v
    [B, kv_heads, window, d]`` hold the keys of positions ``start-window .. start-1`` in order
    (entries at negative positions are ignored) and ``start [B]`` (int64) is each row's first
    position; ``None`` for all three is a fresh start at position 0.

    Queries are cut into ``nb`` blocks of ``qb`` positions (``qb = window``, or ``L`` when
    ``L <= window``); block ``j`` attends to the ``window + qb`` keys that precede and overlap it
    under a band mask shared by all rows. Only the first block can reach negative positions
    (``qb = window`` whenever there are several blocks): after a cache it runs on its own, with a
    mask per row. ``seq_idx [B, L]`` (a fresh start only) numbers packed documents: a query sees
    keys of its own document only (the mask is then one per row).
    """
    batch, heads, length, dim = q.shape
    kv_heads = k.shape[1]
    if prev_k is None or prev_v is None:
        if length <= window and seq_idx is None:
            return causal_attention(q, k, v)
        prev_k = prev_v = k.new_zeros(batch, kv_heads, window, dim)
    qb = window if length > window else length
    nb = -(-length // qb)
    span = window + qb
    device = q.device
    # Keys: [window previous | L new | zero padding to nb·qb]; key c of block j is at position
    # start - window + j·qb + c.
    pad = nb * qb - length
    keys = torch.cat((prev_k, k, k.new_zeros(batch, kv_heads, pad, dim)), 2)
    values = torch.cat((prev_v, v, v.new_zeros(batch, kv_heads, pad, dim)), 2)
    keys = keys.unfold(2, span, qb).transpose(-1, -2)  # [B, kvh, nb, w + qb, d] (overlapping)
    values = values.unfold(2, span, qb).transpose(-1, -2)
    queries = F.pad(q, (0, 0, 0, pad)).view(batch, heads, nb, qb, dim)
    queries = _fold_groups(queries, kv_heads)  # [B, kvh, nb, g·qb, d]
    groups = heads // kv_heads
    # query i of a block (position first + i) sees key c iff i < c <= i + window
    i = torch.arange(qb, device=device).repeat(groups)[:, None]  # [g·qb, 1]
    c = torch.arange(span, device=device)[None, :]
    band = (c > i) & (c <= i + window)  # [g·qb, w + qb]
    if start is None:
        first = torch.arange(nb, device=device)[:, None, None] * qb
        mask = band & (first + c >= window)  # [nb, g·qb, w + qb]: no key before position 0
        if seq_idx is not None:  # and no key of another document
            key_docs = F.pad(seq_idx, (window, pad), value=-1).unfold(1, span, qb)  # [B, nb, s]
            query_docs = F.pad(seq_idx, (0, pad), value=-1).view(batch, nb, qb)  # pads see pads
            same = query_docs.repeat(1, 1, groups)[..., None] == key_docs[:, :, None, :]
            mask = (mask & same).unsqueeze(1).expand(-1, kv_heads, -1, -1, -1)
            mask = mask.reshape(batch * kv_heads, nb, groups * qb, span)
        out = _sdpa_blocks(queries, keys, values, mask)
    else:
        # block 0, per row: keys at positions start - window + c >= 0
        row_mask = band & (c >= window - start.view(batch, 1, 1, 1))  # [B, 1, g·qb, w + qb]
        head = F.scaled_dot_product_attention(
            queries[:, :, 0], keys[:, :, 0], values[:, :, 0], attn_mask=row_mask
        )
        out = head.unsqueeze(2)
        if nb > 1:
            rest = _sdpa_blocks(queries[:, :, 1:], keys[:, :, 1:], values[:, :, 1:], band)
            out = torch.cat((out, rest), 2)
    out = _unfold_groups(out, heads)  # [B, h, nb, qb, d]
    return out.reshape(batch, heads, nb * qb, dim)[:, :, :length]


def _sdpa_blocks(queries: Tensor, keys: Tensor, values: Tensor, mask: Tensor) -> Tensor:
    """SDPA over ``[B, kvh, nb, n, d]`` blocks (the block axis as SDPA's head axis, so that one
    mask ``[nb, n, keys]`` or ``[n, keys]`` serves every row and kv head; or one per row and kv
    head, ``[B·kvh, nb, n, keys]``)."""
    batch, kv_heads, nb, n, dim = queries.shape
    span = keys.shape[-2]
    out = F.scaled_dot_product_attention(
        queries.reshape(batch * kv_heads, nb, n, dim),
        keys.reshape(batch * kv_heads, nb, span, dim),
        values.reshape(batch * kv_heads, nb, span, dim),
        attn_mask=mask if mask.dim() != 3 else mask.unsqueeze(0),
    )
    return out.view(batch, kv_heads, nb, n, dim)


def _in_blocks(
    q: Tensor, keys: Tensor, values: Tensor, offset: int, mask_of: Callable[[int, int], Tensor]
) -> Tensor:
    """Queries ``q [B, h, L, d]`` (key indices ``offset + 0..L-1``) in blocks ``lo..hi-1`` over
    the keys ``[:offset + hi]``, under ``mask_of(lo, hi)`` (``[B, 1, hi-lo, offset+hi]`` bool);
    each block's mask holds at most :data:`MASK_BUDGET` values."""
    batch, _, length, _ = q.shape
    block = max(1, min(length, MASK_BUDGET // max(1, batch * (offset + length))))
    outs = []
    for lo in range(0, length, block):
        hi = min(length, lo + block)
        end = offset + hi
        outs.append(
            F.scaled_dot_product_attention(
                q[:, :, lo:hi],
                keys[:, :, :end],
                values[:, :, :end],
                attn_mask=mask_of(lo, hi),
                enable_gqa=True,
            )
        )
    return torch.cat(outs, 2)


def cached_attention(
    q: Tensor, k: Tensor, v: Tensor, cache_k: Tensor, cache_v: Tensor, lengths: Tensor
) -> Tensor:
    """Full causal attention of new queries after each row's cached keys.

    ``q [B, h, L, d]``, ``k, v [B, kvh, L, d]`` at positions ``lengths[b] + 0..L-1``;
    ``cache_k, cache_v [B, kvh, P, d]`` hold row ``b``'s earlier keys in slots
    ``0 .. lengths[b]-1`` (later slots are ignored).
    """
    batch, cached = q.shape[0], cache_k.shape[2]
    keys = torch.cat((cache_k, k), 2)  # [B, kvh, P + L, d]
    values = torch.cat((cache_v, v), 2)
    cols = torch.arange(cached + q.shape[2], device=q.device)
    old_ok = cols.view(1, 1, -1) < lengths.view(batch, 1, 1)  # [B, 1, P + L]

    def mask_of(lo: int, hi: int) -> Tensor:
        rows = torch.arange(lo, hi, device=q.device)[:, None]  # new positions lo..hi-1
        end = cached + hi
        new_ok = (cols[:end] >= cached) & (cols[:end] - cached <= rows)  # [n, P + hi]
        return (old_ok[..., :end] | new_ok).unsqueeze(1)  # [B, 1, n, P + hi]

    return _in_blocks(q, keys, values, cached, mask_of)


def packed_attention(q: Tensor, k: Tensor, v: Tensor, seq_idx: Tensor) -> Tensor:
    """Full causal attention within documents: query ``t`` sees keys ``s <= t`` with
    ``seq_idx[b, s] == seq_idx[b, t]`` (``seq_idx [B, L]``, non-decreasing per row).

    Queries run in blocks (a mask of at most :data:`MASK_BUDGET` values each) over the keys from
    the earliest start, over the rows, of the documents the block's first query belongs to:
    keys of earlier documents are never touched, so the cost follows the documents' lengths.
    """
    batch, _, length, _ = q.shape
    cols = torch.arange(length, device=q.device)
    first = (cols - document_positions(seq_idx)).amin(0).tolist()  # [L]: earliest key seen
    block = max(1, min(length, MASK_BUDGET // max(1, batch * length)))
    outs = []
    for lo in range(0, length, block):
        hi, k0 = min(length, lo + block), first[lo]
        causal = cols[k0:hi] <= cols[lo:hi, None]  # [n, hi - k0]
        same = seq_idx[:, lo:hi, None] == seq_idx[:, None, k0:hi]  # [B, n, hi - k0]
        mask = (causal & same).unsqueeze(1)
        outs.append(
            F.scaled_dot_product_attention(
                q[:, :, lo:hi], k[:, :, k0:hi], v[:, :, k0:hi], attn_mask=mask, enable_gqa=True
            )
        )
    return torch.cat(outs, 2)


def decode_attention(q: Tensor, cache_k: Tensor, cache_v: Tensor, valid: Tensor) -> Tensor:
    """One query per row, ``q [B, h, 1, d]``, over the cache ``[B, kvh, C, d]`` where
    ``valid [B, C]`` (bool) marks the slots it may read."""
    batch, heads, _, dim = q.shape
    kv_heads = cache_k.shape[1]
    folded = q.view(batch, kv_heads, heads // kv_heads, dim)  # a group's heads as query rows
    mask = valid.view(batch, 1, 1, -1)
    out = F.scaled_dot_product_attention(folded, cache_k, cache_v, attn_mask=mask)
    return out.view(batch, heads, 1, dim)


def contain(x: Tensor, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor, Tensor | None]:
    """``k, v`` with their non-finite rows zeroed, and those rows ``[B, kvh, L]`` (bool); ``None``
    (and ``k, v`` unchanged) when the input ``x`` is finite, the common case (one check)."""
    if bool(torch.isfinite(x).all()):
        return k, v, None
    bad = ~(torch.isfinite(k).all(-1) & torch.isfinite(v).all(-1))
    mask = bad.unsqueeze(-1)
    return k.masked_fill(mask, 0.0), v.masked_fill(mask, 0.0), bad


def poison(out: Tensor, bad: Tensor, window: int | None, offsets: Tensor) -> Tensor:
    """NaN for the queries of ``out [B, h, L, d]`` that see a non-finite key: query ``t`` sees
    keys ``t - min(offsets[t], window - 1) .. t``, with ``offsets [L]`` or ``[B, L]`` its
    distance to the start of its document (or of the chunk)."""
    batch, heads, length, _ = out.shape
    kv_heads = bad.shape[1]
    ends = torch.arange(1, length + 1, device=out.device)
    reach = offsets if window is None else offsets.clamp(max=window - 1)
    starts = (ends - 1 - reach).expand(batch, length)  # first key index each query sees
    counts = F.pad(bad.long().cumsum(-1), (1, 0))  # [B, kvh, L + 1]
    ends = ends.expand(batch, length)
    seen = counts.gather(-1, ends.unsqueeze(1).expand(-1, kv_heads, -1)) - counts.gather(
        -1, starts.unsqueeze(1).expand(-1, kv_heads, -1)
    )
    seen = (seen > 0).repeat_interleave(heads // kv_heads, dim=1)  # [B, h, L]
    return out.masked_fill(seen.unsqueeze(-1), float("nan"))

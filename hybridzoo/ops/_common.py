"""What every kernel of the chunked linear-recurrence family shares: argument checks, the decay
floor, document starts from ``seq_idx``, and the causal block arithmetic of a chunk.

Causal blocks. A chunk of ``C`` positions (a power of two) is cut, at level ``m`` = 1, 2, ...,
C/2, into segments of ``m`` positions; an odd segment and the even segment before it form a
block of ``2m``. Every pair ``s < t`` of the chunk lies in exactly one such block, ``t`` in its
second half and ``s`` in its first, so a lower-triangular product is the diagonal plus, per
level, a "second half × first half" matmul. Nothing multiplies a value at ``s`` into an output at
``t < s``: a NaN or inf at ``s`` cannot reach an earlier output (a masked full-chunk matmul would
compute ``0 · x_s``). Decay factors between the two halves factorise around the block's
midpoint into two factors ``<= 1``, obtained by multiplying per-segment totals level by level:
no difference of two cumulative sums is ever taken, so a strong decay (any log decay down to
``-inf``) costs no precision in the weak decays that follow it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from hybridzoo.errors import OptionError, ShapeError
from hybridzoo.ops._checks import sizes

DECAY_FLOOR = -1.0e4
"""Log decays are raised to this floor (``-inf`` included) and document starts get it: its
``exp`` is exactly 0 in every floating-point dtype, so nothing changes but that sums of log
decays stay finite (``-inf - -inf`` would be NaN)."""


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype the recurrence runs in: float64 stays float64, everything else runs in float32."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def resolve_scale(scale: float | None, d_k: int) -> float:
    """``scale`` or the default ``K ** -0.5``."""
    if scale is None:
        return d_k**-0.5
    if isinstance(scale, bool) or not isinstance(scale, (int, float)):
        raise OptionError(f"scale must be a float or None, got {type(scale).__name__} {scale!r}")
    return float(scale)


def chunk_length(chunk_size: object, t_len: int) -> int:
    """The chunk actually used: ``chunk_size`` (a power of two), or the next power of two >= T
    when the sequence is shorter than one chunk."""
    if (
        isinstance(chunk_size, bool)
        or not isinstance(chunk_size, int)
        or chunk_size < 1
        or chunk_size & (chunk_size - 1)
    ):
        raise OptionError(
            f"chunk_size must be a power of two (1, 2, 4, ..., 64, ...), got {chunk_size!r}"
        )
    return min(chunk_size, 1 << max(t_len - 1, 0).bit_length())


def document_starts(seq_idx: torch.Tensor | None, b: int, t_len: int) -> torch.Tensor | None:
    """``[B, T]`` bool, True where a packed document starts after another one, from ``seq_idx``.

    ``seq_idx [B, T]`` (integers, non-decreasing along T) numbers the documents of each row; the
    first position of a row is never marked (the ``initial_state`` belongs to its document).
    """
    if seq_idx is None:
        return None
    if not isinstance(seq_idx, torch.Tensor):
        raise ShapeError(f"seq_idx must be a torch.Tensor [B, T], got {type(seq_idx).__name__}")
    if seq_idx.is_floating_point() or seq_idx.is_complex() or seq_idx.dtype == torch.bool:
        raise ShapeError(f"seq_idx must be an integer tensor [B, T], got dtype {seq_idx.dtype}")
    if tuple(seq_idx.shape) != (b, t_len):
        raise ShapeError(
            f"seq_idx must have shape [B, T] = {(b, t_len)}, got {tuple(seq_idx.shape)}"
        )
    step = seq_idx[:, 1:] - seq_idx[:, :-1]
    if bool((step < 0).any()):
        row, col = (int(i) for i in (step < 0).nonzero()[0])
        raise ShapeError(
            f"seq_idx must be non-decreasing along T (documents in order), but row {row} goes "
            f"from {int(seq_idx[row, col])} to {int(seq_idx[row, col + 1])} at t={col + 1}"
        )
    return torch.nn.functional.pad(step != 0, (1, 0))


@dataclass(frozen=True)
class Call:
    """One call of a chunked kernel with its arguments checked and resolved (:func:`prepare`)."""

    n: dict[str, int]  # the size of every layout letter
    scale: float
    chunk: int  # the chunk length used (:func:`chunk_length`)
    chunk_size: int  # as asked: the compiled backend's checkpoint interval
    dtype: torch.dtype  # the compute dtype
    out_dtype: torch.dtype
    starts: torch.Tensor | None  # document starts [B, T] or None
    output_final_state: bool

    def initial(self, state: torch.Tensor | None, like: torch.Tensor) -> torch.Tensor:
        """``state`` in the compute dtype, or a zero ``[B, H, K, V]`` state."""
        if state is not None:
            return state.to(self.dtype)
        return like.new_zeros(*(self.n[x] for x in "BHKV"), dtype=self.dtype)

    def result(
        self, o: torch.Tensor, s_end: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``(o in the output dtype, s_end or None)``: what the kernel returns."""
        return o.to(self.out_dtype), (s_end if self.output_final_state else None)


def prepare(
    kernel: str,
    tensors: Sequence[torch.Tensor | None],
    like: torch.Tensor,
    scale: float | None,
    chunk_size: int,
    seq_idx: torch.Tensor | None,
    output_final_state: bool,
) -> Call:
    """Check ``kernel``'s tensor arguments (:data:`~hybridzoo.ops._checks.LAYOUTS` order) and
    resolve the options shared by the family; ``like``'s dtype sets the compute and output
    dtypes."""
    n = sizes(kernel, *tensors)
    scale = resolve_scale(scale, n["K"])
    chunk = chunk_length(chunk_size, n["T"])
    dtype = compute_dtype(like.dtype)
    starts = document_starts(seq_idx, n["B"], n["T"])
    return Call(n, scale, chunk, chunk_size, dtype, like.dtype, starts, output_final_state)


def step_inputs(
    kernel: str, tensors: Sequence[torch.Tensor | None], state: torch.Tensor
) -> tuple[dict[str, int], list]:
    """Check a one-token step's tensor arguments (``kernel``'s layouts without ``T``, ``state``
    last); return every letter's size and the tensors in the state's dtype (None stays None)."""
    n = sizes(kernel, *tensors, state, step=True)
    dt = state.dtype
    return n, [None if x is None else x.to(dt) for x in tensors]


def floor_log_decay(g: torch.Tensor, starts: torch.Tensor | None) -> torch.Tensor:
    """``g`` raised to :data:`DECAY_FLOOR`, and :data:`DECAY_FLOOR` at document starts.

    ``starts`` is ``[B, T]`` (from :func:`document_starts`) and broadcasts over ``g``'s trailing
    dimensions. Differentiable (zero gradient where floored or reset). NaN stays NaN.
    """
    g = g.clamp(min=DECAY_FLOOR)
    if starts is None:
        return g
    mask = starts.view(*starts.shape, *([1] * (g.dim() - 2)))
    return g.masked_fill(mask, DECAY_FLOOR)


def needs_grad(*tensors: torch.Tensor | None) -> bool:
    """True when autograd records and one of ``tensors`` (None ones skipped) requires a gradient:
    then a kernel runs through its autograd Function."""
    return torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors)


def pad_time(x: torch.Tensor, length: int) -> torch.Tensor:
    """``x [B, T, ...]`` zero-padded along T to ``length`` (zero keys, values and log decays: the
    padding adds nothing and forgets nothing)."""
    extra = length - x.shape[1]
    if extra == 0:
        return x
    return torch.nn.functional.pad(x, (0, 0) * (x.dim() - 2) + (0, extra))


def halves(x: torch.Tensor, m: int, dim: int = -2) -> torch.Tensor:
    """Split the chunk axis ``dim`` (length C) into ``[C/2m, 2, m]``: blocks of 2m positions, each
    in two halves of m (a view). Index 0 of the new axis is the first half."""
    dim = dim % x.dim()
    c = x.shape[dim]
    return x.view(*x.shape[:dim], c // (2 * m), 2, m, *x.shape[dim + 1 :])


def block(a: torch.Tensor, m: int) -> torch.Tensor:
    """The level-m "second half × first half" blocks of a chunk's ``[..., C, C]`` matrix (a view):
    ``[..., C/2m, m, m]``, rows from each block's second half, columns from its first."""
    *lead, c, _ = a.shape
    nb = c // (2 * m)
    blocks = a.view(*lead, nb, 2 * m, nb, 2 * m).diagonal(dim1=-4, dim2=-2)  # [..., 2m, 2m, nb]
    return blocks[..., m:, :m, :].movedim(-1, -3)


def levels(c: int) -> list[int]:
    """The block levels of a chunk of ``c`` positions, bottom up: 1, 2, 4, ..., c/2."""
    return [1 << i for i in range(max(c.bit_length() - 1, 0))]


def causal_matmul(a: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``y_t = Σ_{s<=t} a_ts x_s`` for ``a [..., C, C]``, ``x [..., C, D]``: the lower triangle
    (diagonal included) of ``a`` times ``x``, never touching ``a`` above the diagonal nor
    combining ``x_s`` into an output before ``s``.

    Blocks of four: the rows of each quarter of the chunk take the quarters before it in one
    matmul (reading ``a``'s rows in place), and the four diagonal blocks recurse, down to blocks
    of four positions done by offset diagonals. C a power of two."""
    lead, c, d = a.shape[:-2], a.shape[-1], x.shape[-1]
    nb = lead.numel()
    return _causal(a.reshape(nb, c, c), x.reshape(nb, c, d)).view(*lead, c, d)


def _causal(a: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    nb, c, d = x.shape
    if c <= 4:
        y = a.diagonal(dim1=-2, dim2=-1).unsqueeze(-1) * x
        for off in range(1, c):  # a_{t, t-off} x_{t-off}
            y[:, off:].addcmul_(a.diagonal(-off, dim1=-2, dim2=-1).unsqueeze(-1), x[:, : c - off])
        return y
    q = c // 4
    blocks = a.view(nb, 4, q, 4, q).diagonal(dim1=1, dim2=3)  # [nb, q, q, 4]
    diag = blocks.permute(0, 3, 1, 2).reshape(nb * 4, q, q)
    y = _causal(diag, x.reshape(nb * 4, q, d)).view(nb, c, d)
    for j in range(1, 4):  # quarter j reads quarters 0 .. j-1
        rows = slice(j * q, (j + 1) * q)
        y[:, rows] += torch.bmm(a[:, rows, : j * q], x[:, : j * q])
    return y


class ScalarDecays:
    """The decay factors of a chunk under a scalar log decay ``g [..., C]`` (per position):

    - ``gamma [..., C, C]``: ``exp(Σ_{s<j<=t} g_j)`` for ``s <= t`` (1 on the diagonal), 0 above;
    - ``from_start [..., C]``: ``exp(Σ_{j<=t} g_j)``, the decay from the chunk's start to ``t``;
    - ``to_end [..., C]``: ``exp(Σ_{s<j} g_j)``, from ``s`` to the chunk's end;
    - ``total [..., 1]``: the whole chunk's decay.

    Built level by level from products of per-segment totals (module docstring): every factor is
    exact to rounding for any decay strength. Differentiable.
    """

    def __init__(self, g: torch.Tensor) -> None:
        c = g.shape[-1]
        w = torch.exp(g)
        gamma = g.new_zeros(*g.shape, c)
        gamma.diagonal(dim1=-2, dim2=-1).fill_(1.0)
        eq, ek, tot = w, torch.ones_like(w), w  # per position: to its segment's end / start
        for m in levels(c):
            eq2, ek2 = halves(eq, m, -1), halves(ek, m, -1)  # [..., C/2m, 2, m]
            pair = tot.view(
                *tot.shape[:-1], tot.shape[-1] // 2, 2
            )  # segment totals, [..., C/2m, 2]
            block(gamma, m).copy_(eq2[..., 1, :].unsqueeze(-1) * ek2[..., 0, :].unsqueeze(-2))
            eq = torch.stack((eq2[..., 0, :], eq2[..., 1, :] * pair[..., :1]), -2).flatten(-3)
            ek = torch.stack((ek2[..., 0, :] * pair[..., 1:], ek2[..., 1, :]), -2).flatten(-3)
            tot = pair[..., 0] * pair[..., 1]
        self.gamma, self.from_start, self.to_end, self.total = gamma, eq, ek, tot

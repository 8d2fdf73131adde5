"""Contract ``packing``: a packed forward equals the separate forwards of its documents.

A layer that declares ``capabilities.packing`` takes ``seq_idx [B, L]`` in its bodies' forward
(:class:`hybridzoo.plugin.PackingBody`); a positionwise layer packs without declaring it. The
documents of each row are drawn at random from the case's seed, a document of length 1 among
them.
"""

from __future__ import annotations

import inspect
import itertools
from typing import Any

import torch
from torch import nn

import hybridzoo.testing.case as cases
from hybridzoo.nn.positionwise import Positionwise
from hybridzoo.testing.case import LayerCase
from hybridzoo.testing.catalog import register
from hybridzoo.testing.compare import assert_close, tensor
from hybridzoo.testing.contracts.causality import _chunk_variants, _plant
from hybridzoo.testing.protocol import forward, named
from hybridzoo.testing.results import CheckFailure, CheckSkipped

# pytest hides the kit's own frames from tracebacks: the author sees the failure first
__tracebackhide__ = True

#: The packing checks run on at least this many positions (room for a few documents).
PACKING_MIN_LENGTH = 8


def _require_packing(case: LayerCase) -> None:
    if not case.spec.capabilities.supports_packing:
        raise CheckSkipped(
            f"layer {case.name!r} declares neither capabilities.packing nor positionwise (the "
            "core refuses packed documents for it)"
        )


def document_lengths(length: int, generator: torch.Generator) -> list[int]:
    """Random lengths of documents that fill ``length`` positions (``length >= 2``): about one
    boundary per three positions, at least one document of length 1."""
    count = max(1, length // 3)
    cuts = torch.randperm(length - 1, generator=generator)[:count] + 1
    bounds = sorted({0, length, *cuts.tolist()})
    lengths = [b - a for a, b in itertools.pairwise(bounds)]
    if 1 not in lengths:  # split one position off the longest document
        i = lengths.index(max(lengths))
        lengths[i : i + 1] = [1, lengths[i] - 1]
    return lengths


def packed_layout(case: LayerCase, length: int, offset: int = 0) -> list[list[int]]:
    """The document lengths of each row of the case's batch (different in each row)."""
    generator = torch.Generator().manual_seed(case.seed * 7919 + 555 + offset)
    return [document_lengths(length, generator) for _ in range(case.batch)]


def seq_idx_of(layout: list[list[int]], device: str) -> torch.Tensor:
    """``[B, L]`` int64 document numbers of ``layout`` (one list of lengths per row)."""
    rows = [torch.repeat_interleave(torch.arange(len(r)), torch.tensor(r)) for r in layout]
    return torch.stack(rows).to(device)


def pieces(layout: list[list[int]]) -> list[tuple[int, int, int]]:
    """``(row, start, end)`` of every document."""
    out = []
    for row, lengths in enumerate(layout):
        start = 0
        for n in lengths:
            out.append((row, start, start + n))
            start += n
    return out


def takes_seq_idx(body: nn.Module, case: LayerCase) -> bool:
    """Whether the core hands ``seq_idx`` to ``body`` (not to per-position bodies)."""
    return not case.spec.capabilities.positionwise and not isinstance(body, Positionwise)


class Packed:
    """``body`` called as the core calls it on packed documents."""

    def __init__(self, body: nn.Module, seq_idx: torch.Tensor, case: LayerCase) -> None:
        self.body, self.seq_idx, self.packs = body, seq_idx, takes_seq_idx(body, case)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if not self.packs:
            return self.body(x)
        try:
            return self.body(x, seq_idx=self.seq_idx)
        except TypeError as exc:
            if "seq_idx" not in str(exc):
                raise
            raise CheckFailure(
                f"{type(self.body).__name__}.forward does not take the keyword seq_idx ({exc}), "
                "but the layer declares capabilities.packing: every body takes "
                "forward(x, *, seq_idx=None), except a per-position sub-block derived from "
                "hybridzoo.nn.Positionwise"
            ) from None


def _outputs_and_gradients(call: Any, body: nn.Module, x: torch.Tensor, w: torch.Tensor):
    """``call(x)`` and the gradients of ``(call(x) · w).sum()`` for ``x`` and every parameter."""
    x = x.detach().clone().requires_grad_(True)
    params = [p for p in body.parameters() if p.requires_grad]
    y = tensor(call(x), "forward")
    wrt = [x, *params]
    grads = torch.autograd.grad((y * w).sum(), wrt, allow_unused=True)
    return y.detach(), [
        torch.zeros_like(t) if g is None else g for g, t in zip(grads, wrt, strict=True)
    ]


def _compare_packed(case: LayerCase, body: nn.Module, name: str, length: int) -> None:
    layout = packed_layout(case, length)
    seq_idx = seq_idx_of(layout, case.device)
    x = case.inputs(length=length)
    w = case.inputs(length=length, offset=7)
    y, grads = _outputs_and_gradients(Packed(body, seq_idx, case), body, x, w)
    if y.shape != x.shape:
        raise CheckFailure(f"{name}: a packed forward maps {list(x.shape)} to {list(y.shape)}")
    y_sep = torch.zeros_like(y)
    grads_sep = [torch.zeros_like(g) for g in grads]
    for row, start, end in pieces(layout):
        part = slice(start, end)
        y_doc, g_doc = _outputs_and_gradients(
            body, body, x[row : row + 1, part], w[row : row + 1, part]
        )
        y_sep[row : row + 1, part] = y_doc
        grads_sep[0][row : row + 1, part] = g_doc[0]
        for total, g in zip(grads_sep[1:], g_doc[1:], strict=True):
            total += g
    where = f"documents of lengths {layout}"
    assert_close(y, y_sep, what=f"{name}: packed forward != separate forwards ({where})")
    assert_close(grads[0], grads_sep[0], what=f"{name}: packed input gradient != separate")
    params = [n for n, p in body.named_parameters() if p.requires_grad]
    for param, g, g_sep in zip(params, grads[1:], grads_sep[1:], strict=True):
        assert_close(
            g.unsqueeze(0),
            g_sep.unsqueeze(0),
            what=f"{name}: packed gradient of {param} != sum of the separate ones ({where})",
        )


@register("packed_equals_separate", "packing")
def check_packed_equals_separate(case: LayerCase) -> None:
    """For each body, a forward of rows packed with random documents (one of length 1 at least)
    equals the forwards of each document alone, outputs and the gradients of the input and of
    every parameter (float64), at the case's options and, with a ``chunk_size`` option, at a
    smaller chunk size too."""
    _require_packing(case)
    length = max(case.length, PACKING_MIN_LENGTH)
    for variant, sub in _chunk_variants(case):
        for label_, body in named(sub.bodies()):
            _compare_packed(sub, body, f"{label_}{variant}", length)


@register("packed_containment", "packing")
def check_packed_containment(case: LayerCase) -> None:
    """Under packing, a NaN or an inf planted at position s leaves every output before s bitwise
    unchanged (s = the start of a row's second document, a middle position and L-1; float32 and
    float64; at a smaller chunk size too), and so does garbage (NaN) in padding after the last
    document of a row (the padding its own document)."""
    _require_packing(case)
    length = max(case.length, PACKING_MIN_LENGTH)
    layout = packed_layout(case, length)
    seq_idx = seq_idx_of(layout, case.device)
    second = layout[0][0]
    positions = sorted({second, (length // 2) | 1, length - 1} & set(range(1, length)))
    for variant, sub in _chunk_variants(case):
        chunk = getattr(sub.options, "chunk_size", None)
        for dtype in (torch.float32, torch.float64):
            x = sub.inputs(length=length).to(dtype)
            for label_, body in named(sub.bodies(dtype=dtype)):
                name = f"{label_} in {cases.dtype_name(dtype)}{variant}, packed ({layout})"
                call = Packed(body, seq_idx, sub)
                with torch.no_grad():
                    y = forward(call, x, name)
                    for s in positions:
                        _plant(call, x, y, s, name, chunk)
                    _padding(body, sub, x, name)


def _padding(body: nn.Module, case: LayerCase, x: torch.Tensor, name: str) -> None:
    """Documents of ``x`` followed by NaN padding (one more document) keep their outputs."""
    pad = 3
    layout = [[*r, pad] for r in packed_layout(case, x.shape[1], offset=1)]
    seq_idx = seq_idx_of(layout, case.device)
    filled = torch.cat([x, torch.zeros_like(x[:, :pad])], 1)
    garbage = torch.cat([x, torch.full_like(x[:, :pad], float("nan"))], 1)
    y = forward(Packed(body, seq_idx, case), filled, name)
    y2 = forward(Packed(body, seq_idx, case), garbage, name)
    if not torch.equal(y2[:, :-pad], y[:, :-pad]):
        raise CheckFailure(
            f"{name}: NaN padding after the last document (its own document) changed the "
            "outputs of the documents before it (they must stay bitwise equal)"
        )


@register("packed_model", "packing")
def check_packed_model(case: LayerCase) -> None:
    """Two blocks of the layer in a ``HybridModel`` with the sinusoidal encoding: ``model(x,
    seq_idx=...)`` equals the model on each document alone, and for one row ``cu_seqlens``
    gives the same as its ``seq_idx``."""
    _require_packing(case)
    length = max(case.length, PACKING_MIN_LENGTH)
    registry = cases.private_registry(case.spec)
    config = cases.model_config(case, registry, positional_encoding="sinusoidal")
    model = cases.build_model(config, case, registry)
    layout = packed_layout(case, length, offset=2)
    seq_idx = seq_idx_of(layout, case.device)
    x = case.randn(case.batch, length, case.hidden_size + 1, offset=11)
    with torch.no_grad():
        y = model(x, seq_idx=seq_idx)
        for row, start, end in pieces(layout):
            assert_close(
                y[row, start:end],
                model(x[row : row + 1, start:end])[0],
                what=f"model(x, seq_idx=...) != the model on document {start}..{end - 1} of row "
                f"{row} alone (documents {layout[row]}, sinusoidal positions)",
            )
        bounds = torch.tensor([0, *torch.tensor(layout[0]).cumsum(0).tolist()])
        assert_close(
            model(x[:1], cu_seqlens=bounds),
            y[:1],
            what="model(x, cu_seqlens=...) != model(x, seq_idx=...) for the same documents",
        )


@register("packed_reference", "packing")
def check_packed_reference(case: LayerCase) -> None:
    """``spec.reference(first_body, x, seq_idx=...)`` (the time-step reference on packed rows)
    equals the first body's packed forward (float64)."""
    _require_packing(case)
    reference = case.spec.reference
    if reference is None:
        raise CheckSkipped(f"layer {case.name!r} declares no reference (spec.reference is None)")
    target = getattr(reference, "resolve", lambda: reference)()
    try:
        takes = "seq_idx" in inspect.signature(target).parameters
    except (TypeError, ValueError):  # a builtin or a callable without a signature
        takes = False
    if not takes:
        raise CheckSkipped(f"the reference of {case.name!r} takes no seq_idx keyword")
    length = max(case.length, PACKING_MIN_LENGTH)
    seq_idx = seq_idx_of(packed_layout(case, length, offset=3), case.device)
    body = case.bodies()[0]
    x = case.inputs(length=length, offset=13)
    with torch.no_grad():
        y = forward(Packed(body, seq_idx, case), x, "packed forward")
        y_ref = tensor(reference(body, x, seq_idx=seq_idx), "the reference's output")
    assert_close(y, y_ref, what=f"{type(body).__name__}: packed forward != spec.reference")

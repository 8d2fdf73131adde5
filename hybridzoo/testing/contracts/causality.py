"""Contract ``causality``: no output depends on a later input, non-finite inputs included."""

from __future__ import annotations

from functools import partial

import attrs
import torch
from torch import nn

from hybridzoo.options import make_options
from hybridzoo.testing.case import LayerCase, dtype_name, hidden_multiple
from hybridzoo.testing.catalog import register
from hybridzoo.testing.compare import assert_close, format_positions, moved_positions
from hybridzoo.testing.protocol import forward, named
from hybridzoo.testing.results import CheckFailure, CheckSkipped

# pytest hides the kit's own frames from tracebacks: the author sees the failure first
__tracebackhide__ = True

#: The chunk sizes :func:`check_backward_containment` tries (the smallest valid one below the
#: case's) for a layer whose options have a ``chunk_size`` field.
SMALL_CHUNKS = (2, 4, 8, 16)


def _require_causal(case: LayerCase) -> None:
    if not case.spec.capabilities.causal:
        raise CheckSkipped(f"layer {case.name!r} declares capabilities.causal=False")


def _leak_reach(body: nn.Module, x: torch.Tensor, y: torch.Tensor, start: int, case) -> str:
    """Which single later inputs move which earlier outputs (a diagnosis, run on a failure)."""
    length = x.shape[1]
    noise = case.inputs(batch=x.shape[0], length=length, offset=200)
    reaches = []
    for s in range(start, length):
        x2 = x.clone()
        x2[:, s] = 3.0 * noise[:, s] + 1.0
        moved, _ = moved_positions(forward(body, x2, "leak")[:, :s], y[:, :s])
        if moved:
            reaches.append((s, moved[0], moved[-1]))
    if not reaches:
        return "no single later input moves an earlier output on its own"
    s, first, _ = max(reaches, key=lambda r: r[0] - r[1])
    shown = "; ".join(f"the input at {s} moves outputs {a}..{b}" for s, a, b in reaches[:4])
    more = f"; ... ({len(reaches)} inputs leak)" if len(reaches) > 4 else ""
    return (
        f"leak: {shown}{more}; the farthest reaches back {s - first} positions (the input at "
        f"{s} moves the output at {first})"
    )


def _causal_hint(body: nn.Module, x, y, y2, t: int, case: LayerCase) -> str:
    _, summary = moved_positions(y2[:, : t + 1], y[:, : t + 1])
    return f"outputs that moved: {summary}\n{_leak_reach(body, x, y, t + 1, case)}"


@register("causal", "causality")
def check_causal(case: LayerCase) -> None:
    """The output at position t does not change when the inputs after t change (for t at the
    start, the middle and the end of the sequence; float64 tolerances). A failure says which
    earlier outputs moved and by how much, and how far back each later input reaches."""
    _require_causal(case)
    length = max(case.length, 2)
    bodies = case.bodies()
    x = case.inputs(length=length)
    cuts = sorted({0, length // 2, length - 2})
    for name, body in named(bodies):
        with torch.no_grad():
            y = forward(body, x, name)
            for n, t in enumerate(cuts):
                x2 = x.clone()
                x2[:, t + 1 :] = 3.0 * case.inputs(length=length, offset=100 + n)[:, t + 1 :] + 1.0
                y2 = forward(body, x2, name)
                assert_close(
                    y2[:, : t + 1],
                    y[:, : t + 1],
                    what=f"{name}: not causal: outputs at positions 0..{t} changed when only "
                    f"inputs after {t} changed",
                    hint=partial(_causal_hint, body, x, y, y2, t, case),
                )


def _chunk_variants(case: LayerCase) -> list[tuple[str, LayerCase]]:
    """The case, and for a layer with a ``chunk_size`` option also the case with the smallest
    valid chunk size of :data:`SMALL_CHUNKS` below its own."""
    variants = [("", case)]
    current = getattr(case.options, "chunk_size", None)
    if not isinstance(current, int) or isinstance(current, bool):
        return variants
    values = attrs.asdict(case.options, recurse=False)
    for size in SMALL_CHUNKS:
        if size >= current:
            break
        record, problems = make_options(case.spec, {**values, "chunk_size": size})
        if problems or case.hidden_size % hidden_multiple(case.spec, record):
            continue
        variants.append((f", chunk_size={size}", attrs.evolve(case, options=record)))
        break
    return variants


def _containment_hint(moved: list[int], s: int, chunk: int | None) -> str:
    if chunk is not None and chunk > 1 and moved[0] == s // chunk * chunk:
        return (
            f"\nposition {moved[0]} starts the chunk (chunk_size={chunk}) that holds position {s}:"
            " a product masked over the whole chunk computes 0 · NaN = NaN; select instead of "
            "multiplying, or split the chunk causally"
        )
    return ""


def _plant(body: nn.Module, x: torch.Tensor, y: torch.Tensor, s: int, name: str, chunk) -> None:
    """Plant a NaN, then an inf, at position ``s``; the outputs before ``s`` must not move."""
    for value in (float("nan"), float("inf")):
        x2 = x.clone()
        x2[:, s] = value
        y2 = forward(body, x2, name)
        if torch.equal(y2[:, :s], y[:, :s]):
            continue
        changed = (y2[:, :s] != y[:, :s]).flatten(2).any(-1).any(0)  # [s]
        moved = [int(t) for t in torch.nonzero(changed).flatten()]
        where = f"before it, at positions {format_positions(moved)}"
        hint = _containment_hint(moved, s, chunk)
        message = f"an input of {value} at position {s} changed the outputs {where}"
        raise CheckFailure(f"{name}: {message} (they must stay bitwise equal){hint}")


@register("backward_containment", "causality")
def check_backward_containment(case: LayerCase) -> None:
    """A NaN or an inf planted at position s leaves every output before s bitwise unchanged
    (for s = 1, an odd middle position and L-1; float32 and float64; for a layer with a
    ``chunk_size`` option, also at the smallest valid chunk size of 2, 4, 8, 16 below the
    case's): no output depends on a later input, non-finite inputs included."""
    _require_causal(case)
    length = max(case.length, 2)
    positions = sorted({1, (length // 2) | 1, length - 1} & set(range(1, length)))
    for variant, sub in _chunk_variants(case):
        chunk = getattr(sub.options, "chunk_size", None)
        for dtype in (torch.float32, torch.float64):
            bodies = sub.bodies(dtype=dtype)
            x = sub.inputs(length=length).to(dtype)
            for label_, body in named(bodies):
                name = f"{label_} in {dtype_name(dtype)}{variant}"
                with torch.no_grad():
                    y = forward(body, x, name)
                    for s in positions:
                        _plant(body, x, y, s, name, chunk)

"""Comparisons and the diagnoses in failure messages.

Two computations of the same maths pass when ``|actual - expected| <= atol + rtol * |expected|``
elementwise (:func:`tolerances`); NaN never passes. When they do not, the message names the first
and the worst differing elements, and the helpers here say more about the cause: which of three
computations is the odd one out (:func:`odd_one_out`), which positions moved and by how much
(:func:`moved_positions`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch

from hybridzoo.testing.results import CheckFailure

__all__ = [
    "assert_close",
    "close",
    "moved_positions",
    "odd_one_out",
    "state_tensors",
    "tolerances",
]

# pytest hides the kit's own frames from tracebacks: the author sees the failure first
__tracebackhide__ = True

_TOLERANCES = {torch.float64: (1e-8, 1e-6), torch.float32: (1e-4, 1e-3)}


def tolerances(dtype: torch.dtype) -> tuple[float, float]:
    """``(atol, rtol)`` of the kit's comparisons in ``dtype``.

    float64: ``(1e-8, 1e-6)``; float32: ``(1e-4, 1e-3)``; other dtypes: ``(1e-2, 1e-2)``.
    """
    return _TOLERANCES.get(dtype, (1e-2, 1e-2))


def format_index(idx: Sequence[int], ndim: int) -> str:
    """``(0, 3, 1)`` of a ``[B, L, H]`` tensor → ``"[b=0, t=3, h=1]"``."""
    names = {3: ("b", "t", "h"), 2: ("b", "h")}.get(ndim)
    if names is None:
        return str(list(idx))
    return "[" + ", ".join(f"{n}={i}" for n, i in zip(names, idx, strict=True)) + "]"


def tensor(value: Any, what: str) -> torch.Tensor:
    """``value`` if it is a tensor, else a :class:`CheckFailure` naming ``what``."""
    if not isinstance(value, torch.Tensor):
        raise CheckFailure(f"{what} must be a torch.Tensor, got {type(value).__name__}")
    return value


def _bad(actual: torch.Tensor, expected: torch.Tensor, dtype: torch.dtype | None) -> torch.Tensor:
    atol, rtol = tolerances(dtype or expected.dtype)
    a, e = actual.detach().to(torch.float64), expected.detach().to(torch.float64)
    return ~((a - e).abs() <= atol + rtol * e.abs())  # NaN is bad


def close(actual: torch.Tensor, expected: torch.Tensor, dtype: torch.dtype | None = None) -> bool:
    """Whether ``actual`` matches ``expected`` (same shape, within the kit's tolerances)."""
    return actual.shape == expected.shape and not bool(_bad(actual, expected, dtype).any())


def assert_close(
    actual: torch.Tensor,
    expected: torch.Tensor,
    *,
    what: str,
    dtype: torch.dtype | None = None,
    hint: str | Callable[[], str] | None = None,
) -> None:
    """Raise :class:`CheckFailure` unless ``actual`` matches ``expected`` within the kit's
    tolerances for ``dtype`` (default: ``expected.dtype``); the message names the first and the
    worst differing elements (``[b, t, h]`` for sequences).

    ``hint`` (a string, or a function computing one, called only on a failure) is appended to the
    message: a diagnosis of the cause. Added in plugin API version 2.
    """
    actual = tensor(actual, what)
    if actual.shape != expected.shape:
        raise CheckFailure(f"{what}: shape {list(actual.shape)}, expected {list(expected.shape)}")
    bad = _bad(actual, expected, dtype)
    if not bad.any():
        return
    atol, rtol = tolerances(dtype or expected.dtype)
    a, e = actual.detach().to(torch.float64), expected.detach().to(torch.float64)
    diff = (a - e).abs()
    first = tuple(int(i) for i in torch.nonzero(bad)[0])
    worst_flat = int(torch.nan_to_num(diff, nan=math.inf).argmax())
    worst = tuple(int(i) for i in torch.unravel_index(torch.tensor(worst_flat), diff.shape))
    nd = diff.dim()
    message = (
        f"{what}: {int(bad.sum())} of {bad.numel()} elements differ beyond atol={atol:g}, "
        f"rtol={rtol:g}; first at {format_index(first, nd)} (got {a[first].item():.6g}, expected "
        f"{e[first].item():.6g}); largest |diff| {diff[worst].item():.3g} at "
        f"{format_index(worst, nd)}"
    )
    note = hint() if callable(hint) else hint
    raise CheckFailure(f"{message}\n{note}" if note else message)


def format_positions(positions: Sequence[int]) -> str:
    """``[0, 1, 2, 5]`` → ``"0..2, 5"`` (sorted, runs joined)."""
    runs: list[list[int]] = []
    for p in sorted(positions):
        if runs and p == runs[-1][1] + 1:
            runs[-1][1] = p
        else:
            runs.append([p, p])
    return ", ".join(str(a) if a == b else f"{a}..{b}" for a, b in runs)


def finite(y: torch.Tensor, what: str) -> None:
    """A :class:`CheckFailure` naming the first non-finite element of ``y``, if any."""
    if not torch.isfinite(y).all():
        bad = torch.nonzero(~torch.isfinite(y))[0].tolist()
        raise CheckFailure(f"{what}: non-finite output (first at {format_index(bad, y.dim())})")


def odd_one_out(
    outputs: Mapping[str, torch.Tensor], dtype: torch.dtype | None = None, *, missing: str = ""
) -> str:
    """Which of three computations of the same values disagrees with the other two.

    ``outputs`` maps a name (``"forward"``, ``"step"``, ``"the reference"``) to its values. With
    three, the message says which one is the odd one out, or that all three differ; with two,
    ``missing`` says why the third is absent (no reference declared, ...).
    """
    names = list(outputs)
    if len(names) < 3:
        return f"(no third computation to tell which is wrong{': ' + missing if missing else ''})"
    agree = [
        (x, y)
        for i, x in enumerate(names)
        for y in names[i + 1 :]
        if close(outputs[x], outputs[y], dtype)
    ]
    if len(agree) == 1:
        pair = agree[0]
        (odd,) = [n for n in names if n not in pair]
        return f"{pair[0]} and {pair[1]} agree: {odd} is the odd one out"
    if not agree:
        return f"{', '.join(names[:-1])} and {names[-1]} all differ from one another"
    return "two of the three pairs agree: the differences are at the edge of the tolerance"


def moved_positions(
    changed: torch.Tensor, baseline: torch.Tensor, dtype: torch.dtype | None = None, limit: int = 6
) -> tuple[list[int], str]:
    """The positions (dim 1 of ``[B, L, H]``) where ``changed`` differs from ``baseline`` beyond
    tolerance, and a summary ``"t=0 by 0.31, t=1 by 0.29, ... (5 of 8 positions)"`` with the
    largest |difference| at each (``nan`` where a value became non-finite)."""
    bad = _bad(changed, baseline, dtype)  # [B, L, H]
    moved = [int(t) for t in torch.nonzero(bad.flatten(2).any(-1).any(0)).flatten()]
    diff = (changed.detach().to(torch.float64) - baseline.detach().to(torch.float64)).abs()
    parts = []
    for t in moved[:limit]:
        worst = diff[:, t].max().item()
        parts.append(f"t={t} by {worst:.3g}")
    more = f", ... ({len(moved)} of {changed.shape[1]} positions)" if len(moved) > limit else ""
    return moved, ", ".join(parts) + more


def state_tensors(state: Any, what: str) -> list[torch.Tensor]:
    """The tensors of a state (a tuple of tensors, possibly nested in tuples/lists)."""
    if isinstance(state, torch.Tensor):
        return [state]
    if isinstance(state, tuple | list):
        out: list[torch.Tensor] = []
        for item in state:
            out.extend(state_tensors(item, what))
        return out
    if state is None:
        return []
    kind = type(state).__name__
    raise CheckFailure(f"{what}: a state must be a tuple of tensors, found a {kind}")


def snapshot(state: Any, what: str) -> list[torch.Tensor]:
    """Clones of a state's tensors, to compare with later."""
    return [t.detach().clone() for t in state_tensors(state, what)]


def same_values(state: Any, saved: list[torch.Tensor], what: str) -> bool:
    """Whether ``state`` holds exactly the values of ``saved`` (a :func:`snapshot`)."""
    now = state_tensors(state, what)
    return len(now) == len(saved) and all(
        a.shape == b.shape and bool(torch.equal(a, b)) for a, b in zip(now, saved, strict=True)
    )

"""Contract ``step_mode``: stepping token by token, prefilling, and prefilling in chunks of any
sizes all equal the parallel forward; ``prefill`` leaves the state it is given alone."""

from __future__ import annotations

import random
import warnings
from functools import partial
from typing import Any

import torch
from torch import nn

from hybridzoo.testing.case import LayerCase, case_model
from hybridzoo.testing.catalog import register
from hybridzoo.testing.compare import assert_close, odd_one_out, same_values, snapshot, tensor
from hybridzoo.testing.protocol import (
    Steps,
    forward,
    named,
    require_stateful,
    run_steps,
    step_bodies,
    step_pair,
    unwrap,
)
from hybridzoo.testing.results import CheckFailure, ConformanceWarning

# pytest hides the kit's own frames from tracebacks: the author sees the failure first
__tracebackhide__ = True


def _third_opinion(
    case: LayerCase, index: int, body: nn.Module, x: torch.Tensor, outputs: dict[str, Any]
) -> str:
    """Which of ``outputs`` (and the reference, for the first body) is the odd one out."""
    missing = "the spec declares no reference"
    if index == 0 and case.spec.reference is not None:
        reference = case.spec.reference(unwrap(body), x)
        outputs = {**outputs, "the reference": tensor(reference, "the reference's output")}
    elif index:
        missing = "the reference covers the first body only"
    return odd_one_out(outputs, missing=missing)


def _step_hint(case: LayerCase, index: int, body: nn.Module, x, y, steps: Steps) -> str:
    opinion = _third_opinion(case, index, body, x, {"forward": y, "step": steps.outputs})
    return "\n".join(n for n in (opinion, steps.hint()) if n)


@register("step_equals_parallel", "step_mode")
def check_step_equals_parallel(case: LayerCase) -> None:
    """For each body, ``init_state`` then ``step`` token by token equals ``forward`` (float64
    tolerances), steps leave the input unchanged; and a model of the layer stepped from
    ``init_state`` equals its ``forward(output="sequence")``. A failure says which of forward,
    step and the reference is the odd one out, and names a state tensor that a step left
    unchanged. A step that returns new state tensors instead of updating the given ones in
    place is a :class:`ConformanceWarning` (allowed, but it allocates)."""
    require_stateful(case)
    bodies = step_bodies(case)
    x = case.inputs()
    x_copy = x.clone()
    with torch.no_grad():
        for i, (name, body) in enumerate(named(bodies)):
            y = forward(body, x, name)
            steps = run_steps(body, x, body.init_state(case.batch), name)
            if not torch.equal(x, x_copy):
                raise CheckFailure(f"{name}: step modified its input x_t in place")
            if steps.reallocated is not None:
                warnings.warn(
                    ConformanceWarning(
                        f"{name}: the step at t={steps.reallocated} returned other state tensors "
                        "than it was given instead of updating them in place (allowed: the core "
                        "keeps what step returns; but each step then allocates)"
                    ),
                    stacklevel=2,
                )
            assert_close(
                steps.outputs,
                y,
                what=f"{name}: step outputs differ from forward",
                hint=partial(_step_hint, case, i, body, x, y, steps),
            )
    model = case_model(case)
    xm = case.randn(case.batch, case.length, case.hidden_size + 1, offset=1)
    with torch.no_grad():
        y = model(xm)
        state = model.init_state(case.batch)
        outs = []
        for t in range(case.length):
            y_t, state = model.step(xm[:, t], state)
            outs.append(y_t)
    assert_close(
        torch.stack(outs, 1), y, what=f"a model of two {case.name!r} blocks: step != forward"
    )


@register("prefill_then_step", "step_mode")
def check_prefill_then_step(case: LayerCase) -> None:
    """For each body and prefix length p (1, L//2, L-1): ``prefill`` of the first p positions
    equals ``forward`` there, stepping on from its state equals ``forward`` on the rest, a second
    ``prefill`` from that state equals it too, and ``prefill(x, init_state(B))`` equals
    ``forward(x)`` (float64 tolerances)."""
    require_stateful(case)
    length = max(case.length, 2)
    bodies = step_bodies(case)
    x = case.inputs(length=length)
    splits = sorted({1, length // 2, length - 1})
    with torch.no_grad():
        for i, (name, body) in enumerate(named(bodies)):
            y = forward(body, x, name)
            y_full, _ = step_pair(body.prefill(x, body.init_state(case.batch)), f"{name}: prefill")
            assert_close(
                y_full,
                y,
                what=f"{name}: prefill(x, init_state(B)) != forward(x)",
                hint=partial(_third_opinion, case, i, body, x, {"forward": y, "prefill": y_full}),
            )
            for p in splits:
                _prefix_then_rest(body, x, y, p, name)


def _prefix_then_rest(body: nn.Module, x: torch.Tensor, y: torch.Tensor, p: int, name: str):
    """Prefill ``x[:, :p]``, then go on from its state by steps and by a second prefill."""
    y_pre, state = step_pair(body.prefill(x[:, :p]), f"{name}: prefill")
    assert_close(y_pre, y[:, :p], what=f"{name}: prefill of the first {p} positions != forward")
    steps = run_steps(body, x[:, p:], state, name)
    _, state = body.prefill(x[:, :p])
    y_rest, _ = step_pair(body.prefill(x[:, p:], state), f"{name}: prefill")
    three = {"forward": y[:, p:], "steps": steps.outputs, "the prefill": y_rest}
    shown = f"(positions {p}..{x.shape[1] - 1} shown as t=0..)"
    assert_close(
        steps.outputs,
        y[:, p:],
        what=f"{name}: steps after a prefill of {p} positions != forward {shown}",
        hint=partial(_notes, partial(odd_one_out, three), partial(steps.hint, offset=p)),
    )
    assert_close(
        y_rest,
        y[:, p:],
        what=f"{name}: prefill from the state after {p} positions != forward {shown}",
        hint=partial(odd_one_out, three),
    )


def _notes(*parts) -> str:
    return "\n".join(n for n in (part() for part in parts) if n)


def _partitions(length: int, seed: int) -> list[tuple[int, ...]]:
    """Splits of ``length`` positions into chunks: two of random sizes 1..4, each with a chunk
    of 1, and (1, length - 1)."""
    rng = random.Random(seed)
    out = []
    for _ in range(2):
        sizes: list[int] = []
        while sum(sizes) < length:
            sizes.append(min(rng.randint(1, 4), length - sum(sizes)))
        if 1 not in sizes:
            sizes[rng.randrange(len(sizes))] -= 1
            sizes.insert(0, 1)
            sizes = [s for s in sizes if s]
        out.append(tuple(sizes))
    out.append((1, length - 1))
    return list(dict.fromkeys(out))


#: Positions stepped after the chunked prefill.
_TAIL = 3


def _prefill_chunks(
    body: nn.Module, x: torch.Tensor, sizes: tuple[int, ...], name: str
) -> tuple[torch.Tensor, Any]:
    """Prefill ``x`` chunk by chunk, checking that each call leaves its given state alone."""
    outs, state, start = [], None, 0
    for n, size in enumerate(sizes):
        saved = None if state is None else snapshot(state, f"{name}: state")
        y, new = step_pair(body.prefill(x[:, start : start + size], state), f"{name}: prefill")
        if saved is not None and not same_values(state, saved, f"{name}: state"):
            raise CheckFailure(
                f"{name}: prefill of chunk {n} (positions {start}..{start + size - 1}) modified "
                "the state it was given: prefill must leave it unchanged and return a new one"
            )
        outs.append(y)
        state, start = new, start + size
    return torch.cat(outs, dim=1), state


@register("chunked_prefill", "step_mode")
def check_chunked_prefill(case: LayerCase) -> None:
    """For each body, ``prefill`` in chunks of random sizes (a chunk of 1 included), each from
    the state the previous one returned, equals one ``prefill`` and ``forward``; ``step`` goes on
    from the last state like ``forward``; and ``prefill`` never modifies the state it is given
    (float64 tolerances)."""
    require_stateful(case)
    length = max(case.length, 4)
    bodies = step_bodies(case)
    x = case.inputs(length=length + _TAIL)
    with torch.no_grad():
        for name, body in named(bodies):
            y = forward(body, x, name)
            y_one, _ = step_pair(body.prefill(x[:, :length]), f"{name}: prefill")
            for sizes in _partitions(length, case.seed):
                what = f"{name}: prefill in chunks {sizes}"
                y_chunks, state = _prefill_chunks(body, x[:, :length], sizes, name)
                assert_close(
                    y_chunks,
                    y[:, :length],
                    what=f"{what} != forward",
                    hint=partial(
                        odd_one_out,
                        {"forward": y[:, :length], "one prefill": y_one, "chunks": y_chunks},
                    ),
                )
                steps = run_steps(body, x[:, length:], state, name)
                assert_close(
                    steps.outputs,
                    y[:, length:],
                    what=f"{what}, then {_TAIL} steps != forward (positions {length}.. shown as "
                    "t=0..)",
                    hint=partial(steps.hint, offset=length),
                )

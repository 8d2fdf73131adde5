"""Calling a body's protocol (``forward``, ``init_state``, ``step``, ``prefill``) and checking
what comes back: types and shapes, with messages naming the body and the call."""

from __future__ import annotations

from typing import Any

import attrs
import torch
from torch import nn

from hybridzoo.nn.positionwise import positionwise_prefill, positionwise_step
from hybridzoo.testing.case import LayerCase
from hybridzoo.testing.compare import snapshot, state_tensors, tensor
from hybridzoo.testing.results import CheckFailure, CheckSkipped

__all__ = [
    "CoreStep",
    "Steps",
    "forward",
    "label",
    "named",
    "require_stateful",
    "run_steps",
    "step_bodies",
    "step_pair",
    "unwrap",
]

# pytest hides the kit's own frames from tracebacks: the author sees the failure first
__tracebackhide__ = True


class CoreStep:
    """A body of a positionwise layer with the step mode the core runs for it (no state; a step
    is ``forward`` on one position, a prefill is ``forward``): the step checks then prove that
    each position alone gives what it gives in the sequence."""

    def __init__(self, body: nn.Module) -> None:
        self.body = body

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)

    def init_state(self, batch_size: int) -> tuple[()]:
        return ()

    def step(self, x_t: torch.Tensor, state: tuple[()]) -> tuple[torch.Tensor, tuple[()]]:
        return positionwise_step(self.body, x_t, state)

    def prefill(
        self, x: torch.Tensor, state: tuple[()] | None = None
    ) -> tuple[torch.Tensor, tuple[()]]:
        return positionwise_prefill(self.body, x, state)


def unwrap(body: Any) -> nn.Module:
    """The module itself (a :class:`CoreStep` holds one)."""
    return body.body if isinstance(body, CoreStep) else body


def label(body: nn.Module, index: int, count: int) -> str:
    """How messages name a body: its class, with its index when the layer has several."""
    kind = type(unwrap(body)).__name__
    return f"body {index} ({kind})" if count > 1 else kind


def step_bodies(case: LayerCase, **build: Any) -> list[Any]:
    """The case's bodies for the step checks: as built, or in a :class:`CoreStep` for a
    positionwise layer (``build``: arguments of :meth:`LayerCase.bodies`)."""
    bodies = case.bodies(**build)
    if case.spec.capabilities.positionwise:
        return [CoreStep(body) for body in bodies]
    return bodies


def named(bodies: list[nn.Module]) -> list[tuple[str, nn.Module]]:
    """``(label, body)`` for each body (see :func:`label`)."""
    return [(label(body, i, len(bodies)), body) for i, body in enumerate(bodies)]


def require_stateful(case: LayerCase) -> None:
    """Skip the check unless the layer has a step mode (its own, or the core's for a
    positionwise layer)."""
    if not case.spec.capabilities.step_mode:
        raise CheckSkipped(
            f"layer {case.name!r} declares capabilities.stateful=False (no init_state/step/prefill)"
            " and is not positionwise"
        )


def forward(body: nn.Module, x: torch.Tensor, what: str) -> torch.Tensor:
    """``body(x)``, checked to be a tensor of ``x``'s shape."""
    y = tensor(body(x), f"{what}: forward")
    if y.shape != x.shape:
        raise CheckFailure(
            f"{what}: forward maps {list(x.shape)} to {list(y.shape)}, expected {list(x.shape)}"
        )
    return y


def step_pair(result: Any, what: str) -> tuple[torch.Tensor, Any]:
    """``result`` checked to be ``(output, state)``."""
    if not (isinstance(result, tuple) and len(result) == 2):
        raise CheckFailure(f"{what} must return (output, state), got {type(result).__name__}")
    return result


@attrs.frozen
class Steps:
    """What :func:`run_steps` saw.

    Attributes:
        outputs: ``[B, T, H]``, the step outputs stacked.
        state: the state after the last step.
        unchanged: ``(t, i, shape)`` of the first step ``t`` (0-based) that left a non-empty
            floating state tensor ``i`` exactly as it was, or ``None``.
        reallocated: the first step that returned other state tensors than it was given (not
            an in-place update), or ``None``.
    """

    outputs: torch.Tensor
    state: Any
    unchanged: tuple[int, int, list[int]] | None
    reallocated: int | None = None

    def hint(self, offset: int = 0) -> str:
        """A diagnosis for a failure, or ``""``: a state tensor that ``step`` did not change."""
        if self.unchanged is None:
            return ""
        t, i, shape = self.unchanged
        return (
            f"state tensor {i} {shape} is unchanged after the step at t={t + offset}: step must "
            "update the state (in place) and return it"
        )


def _unchanged(state: Any, before: list[torch.Tensor], what: str) -> int | None:
    now = state_tensors(state, what)
    if len(now) != len(before):
        return None
    for i, (a, b) in enumerate(zip(now, before, strict=True)):
        if a.is_floating_point() and a.numel() and a.shape == b.shape and torch.equal(a, b):
            return i
    return None


def run_steps(body: nn.Module, x: torch.Tensor, state: Any, what: str) -> Steps:
    """Step ``body`` through ``x [B, T, H]`` from ``state``, always continuing from the state
    ``step`` returns; notes the first step that left a state tensor unchanged."""
    outs = []
    unchanged = reallocated = None
    for t in range(x.shape[1]):
        before = snapshot(state, f"{what}: state") if unchanged is None else None
        given = [(id(s), s.data_ptr()) for s in state_tensors(state, f"{what}: state")]
        y_t, state = step_pair(body.step(x[:, t], state), f"{what}: step")
        returned = [(id(s), s.data_ptr()) for s in state_tensors(state, f"{what}: state")]
        if reallocated is None and returned != given:
            reallocated = t
        y_t = tensor(y_t, f"{what}: step output")
        if y_t.shape != x[:, t].shape:
            raise CheckFailure(
                f"{what}: step maps x_t {list(x[:, t].shape)} to {list(y_t.shape)}, expected "
                f"{list(x[:, t].shape)}"
            )
        if before is not None:
            i = _unchanged(state, before, f"{what}: state")
            if i is not None:
                unchanged = (t, i, list(before[i].shape))
        outs.append(y_t)
    return Steps(torch.stack(outs, dim=1), state, unchanged, reallocated)  # [B, T, H]

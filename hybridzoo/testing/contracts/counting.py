"""Contract ``counting``: ``param_count`` and ``state_size`` are exact closed formulas."""

from __future__ import annotations

import torch
from torch import nn

from hybridzoo.testing.case import LayerCase, hidden_multiple
from hybridzoo.testing.catalog import register
from hybridzoo.testing.compare import state_tensors
from hybridzoo.testing.protocol import require_stateful, step_bodies
from hybridzoo.testing.results import CheckFailure, CheckSkipped

# pytest hides the kit's own frames from tracebacks: the author sees the failure first
__tracebackhide__ = True


def _param_listing(bodies: list[nn.Module], limit: int = 12) -> str:
    rows = []
    for i, body in enumerate(bodies):
        for name, p in body.named_parameters():
            rows.append(f"body{i}.{name} {list(p.shape)} = {p.numel()}")
    more = f", ... ({len(rows) - limit} more)" if len(rows) > limit else ""
    return ", ".join(rows[:limit]) + more


@register("param_count_exact", "counting")
def check_param_count_exact(case: LayerCase) -> None:
    """``spec.param_count(options, H)`` equals the number of parameters of the bodies the factory
    builds (shared tensors once), at the case's H and at the next valid hidden size."""
    spec = case.spec
    multiple = hidden_multiple(spec, case.options)
    for hidden in (case.hidden_size, case.hidden_size + multiple):
        formula = spec.param_count(case.options, hidden)
        if isinstance(formula, bool) or not isinstance(formula, int):
            raise CheckFailure(
                f"param_count(options, {hidden}) must return an int, got {formula!r} "
                f"({type(formula).__name__})"
            )
        bodies = case.bodies(hidden_size=hidden, dtype=torch.float32)
        built = sum(p.numel() for p in nn.ModuleList(bodies).parameters())
        if formula != built:
            raise CheckFailure(
                f"param_count(options, hidden_size={hidden}) = {formula}, but the built bodies "
                f"have {built} parameters (formula {'+' if formula > built else '-'}"
                f"{abs(formula - built)}); parameters: {_param_listing(bodies)}"
            )


@register("state_size_formula", "counting")
def check_state_size_formula(case: LayerCase) -> None:
    """``spec.state_size(options, H)`` equals the elements per sequence of ``init_state``: the
    elements that grow with the batch (measured at B=1 and B=3); tensors shared across the batch
    (a position counter) are not counted. Skipped when the formula returns ``None`` for the
    case's options (a state that grows with the sequence)."""
    require_stateful(case)
    if case.spec.capabilities.positionwise and case.spec.state_size is None:
        raise CheckSkipped(
            f"layer {case.name!r} is positionwise: it holds no state (the core counts 0)"
        )
    if case.spec.state_size is None:
        raise CheckSkipped(f"layer {case.name!r} declares no state_size formula")
    formula = case.spec.state_size(case.options, case.hidden_size)
    if formula is None:
        raise CheckSkipped(
            f"state_size(options, {case.hidden_size}) is None for {case.options!r}: the state "
            "grows with the sequence"
        )
    if isinstance(formula, bool) or not isinstance(formula, int) or formula < 0:
        raise CheckFailure(
            f"state_size(options, {case.hidden_size}) must be an int >= 0, got {formula!r}"
        )
    bodies = step_bodies(case)
    counts = {}
    for batch in (1, 3):
        counts[batch] = sum(
            t.numel()
            for body in bodies
            for t in state_tensors(body.init_state(batch), f"{type(body).__name__}.init_state")
        )
    per_sequence, rest = divmod(counts[3] - counts[1], 2)
    if rest or counts[1] - per_sequence < 0:
        raise CheckFailure(
            f"init_state holds {counts[1]} elements for B=1 and {counts[3]} for B=3: not "
            "linear in the batch size"
        )
    if per_sequence != formula:
        raise CheckFailure(
            f"state_size(options, {case.hidden_size}) = {formula}, but init_state holds "
            f"{per_sequence} elements per sequence (plus {counts[1] - per_sequence} shared)"
        )

"""Contract ``reference``: the fast path equals the slow time-step reference."""

from __future__ import annotations

import torch

from hybridzoo.testing.case import LayerCase
from hybridzoo.testing.catalog import register
from hybridzoo.testing.compare import assert_close, odd_one_out, tensor
from hybridzoo.testing.protocol import CoreStep, forward, run_steps
from hybridzoo.testing.results import CheckSkipped

# pytest hides the kit's own frames from tracebacks: the author sees the failure first
__tracebackhide__ = True


@register("reference_matches", "reference")
def check_reference_matches(case: LayerCase) -> None:
    """``spec.reference(first_body, x)`` (the slow time-step evaluation) equals the first body's
    forward in float64 within ``atol=1e-8, rtol=1e-6``. A failure of a stateful layer says which
    of forward, step and the reference is the odd one out."""
    if case.spec.reference is None:
        raise CheckSkipped(f"layer {case.name!r} declares no reference (spec.reference is None)")
    body = case.bodies()[0]
    name = type(body).__name__
    x = case.inputs()
    with torch.no_grad():
        y = forward(body, x, name)
        y_ref = tensor(case.spec.reference(body, x), "the reference's output")

        def hint() -> str:
            if not case.spec.capabilities.step_mode:
                return odd_one_out(
                    {"forward": y, "the reference": y_ref}, missing="the layer has no step mode"
                )
            stepper = CoreStep(body) if case.spec.capabilities.positionwise else body
            steps = run_steps(stepper, x, stepper.init_state(x.shape[0]), name).outputs
            return odd_one_out({"forward": y, "the reference": y_ref, "step": steps})

        assert_close(y, y_ref, what=f"{name}: forward != spec.reference", hint=hint)

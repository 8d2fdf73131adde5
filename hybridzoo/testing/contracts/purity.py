"""Contract ``purity``: ``forward`` is a function of each row alone: batch rows are independent,
eval mode is deterministic, and the input is left unchanged."""

from __future__ import annotations

import torch

from hybridzoo.testing.case import LayerCase
from hybridzoo.testing.catalog import register
from hybridzoo.testing.compare import assert_close
from hybridzoo.testing.protocol import forward, named
from hybridzoo.testing.results import CheckFailure

# pytest hides the kit's own frames from tracebacks: the author sees the failure first
__tracebackhide__ = True


@register("batch_independent", "purity")
def check_batch_independent(case: LayerCase) -> None:
    """Each row of a batch gives the same output as alone, and changing one row leaves the
    others unchanged (B = max(batch, 2); float64 tolerances)."""
    batch = max(case.batch, 2)
    bodies = case.bodies()
    x = case.inputs(batch=batch)
    with torch.no_grad():
        for name, body in named(bodies):
            y = forward(body, x, name)
            for row in range(batch):
                alone = forward(body, x[row : row + 1], name)
                assert_close(
                    alone, y[row : row + 1], what=f"{name}: row {row} alone != row {row} in a batch"
                )
            x2 = x.clone()
            x2[0] = case.inputs(batch=1, offset=5)[0]
            y2 = forward(body, x2, name)
            assert_close(
                y2[1:],
                y[1:],
                what=f"{name}: rows 1.. changed when only row 0 changed (shown as b=0..)",
            )


@register("eval_deterministic", "purity")
def check_eval_deterministic(case: LayerCase) -> None:
    """In eval mode two forward calls on the same input give identical outputs (exactly), and
    forward does not modify its input."""
    bodies = case.bodies()
    x = case.inputs()
    x_copy = x.clone()
    with torch.no_grad():
        for name, body in named(bodies):
            y1 = forward(body, x, name)
            if not torch.equal(x, x_copy):
                raise CheckFailure(f"{name}: forward modified its input in place")
            y2 = forward(body, x, name)
            if not torch.equal(y1, y2):
                diff = (y1 - y2).abs().max().item()
                raise CheckFailure(
                    f"{name}: two eval-mode forwards on one input differ (max |diff| {diff:.3g})"
                )

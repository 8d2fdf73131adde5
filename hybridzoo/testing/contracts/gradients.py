"""Contract ``gradients``: gradients reach every parameter."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from hybridzoo.testing.case import LayerCase, seeded
from hybridzoo.testing.catalog import register
from hybridzoo.testing.protocol import named
from hybridzoo.testing.results import CheckFailure

# pytest hides the kit's own frames from tracebacks: the author sees the failure first
__tracebackhide__ = True

#: The gradient check runs on at least this many positions.
GRADIENT_MIN_LENGTH = 8


def _gradients(
    body: nn.Module, x: torch.Tensor, weight: torch.Tensor
) -> tuple[dict[str, Any], Any]:
    body.zero_grad(set_to_none=True)
    x = x.detach().clone().requires_grad_(True)
    y = body(x)
    (y * weight).sum().backward()
    return {n: p.grad for n, p in body.named_parameters()}, x.grad


@register("gradients_reach_parameters", "gradients")
def check_gradients_reach_parameters(case: LayerCase) -> None:
    """In train mode (L >= 8), a random projection of the output back-propagates finite gradients
    to the input and to every parameter, none of them identically zero. A parameter with an all-zero
    gradient at initialisation (a zero-initialised projection hides the path) is checked again
    after jittering every parameter by 0.02·N(0, 1); it fails only if still zero. Zero means
    exactly zero: a gradient at the rounding-noise level passes (a real gradient can be as small
    as 1e-14 of the largest, e.g. Mamba's ``A_log`` at tiny step sizes)."""
    # short sequences hide parameters: at L=1 no decay or attention score matters, RWKV's decay
    # first acts at L=3, a convolution tap of lag k at L=k+1
    length = max(case.length, GRADIENT_MIN_LENGTH)
    bodies = case.bodies()
    x = case.inputs(length=length)
    weight = case.inputs(length=length, offset=3)
    for name, body in named(bodies):
        body.train()
        grads, x_grad = _gradients(body, x, weight)
        missing = [n for n, g in grads.items() if g is None]
        if missing:
            raise CheckFailure(f"{name}: no gradient reaches {', '.join(missing)} (unused?)")
        for param, g in [*grads.items(), ("<input>", x_grad)]:
            if g is None or not torch.isfinite(g).all():
                raise CheckFailure(f"{name}: the gradient of {param} is missing or not finite")
        zero = [n for n, g in grads.items() if not g.any()]
        if zero:
            with seeded(case.seed + 1), torch.no_grad():
                for p in body.parameters():
                    p.add_(0.02 * torch.randn(p.shape, dtype=torch.float64).to(p))
            grads, _ = _gradients(body, x, weight)
            still = [n for n in zero if grads[n] is None or not grads[n].any()]
            if still:
                raise CheckFailure(
                    f"{name}: the gradient of {', '.join(still)} is identically zero (even "
                    "after jittering the parameters): these parameters do not affect the output"
                )

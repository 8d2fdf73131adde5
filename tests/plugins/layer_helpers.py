"""Shared helpers of the layer tests: the conformance kit over option variants and dtypes, and the
low-precision check (bf16 forward against the float64 evaluation of the same rounded weights)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import pytest
import torch
from torch import nn

from hybridzoo.testing import CHECKS, BoundCheck

DTYPES = (torch.float32, torch.float64)


def kit_params(layer: str, variants: Mapping[str, Mapping[str, Any]]) -> pytest.MarkDecorator:
    """Parametrize ``check`` over every kit check × option variant × float32/float64.

    Ids are ``<layer>-<check>-<variant>-<dtype>``.
    """
    params, ids = [], []
    for label, options in variants.items():
        for dtype in DTYPES:
            for name in CHECKS:
                params.append(BoundCheck(layer, name, {"options": dict(options), "dtype": dtype}))
                ids.append(f"{layer}-{name}-{label}-{str(dtype).replace('torch.', '')}")
    return pytest.mark.parametrize("check", params, ids=ids)


def randomize(module: nn.Module, *, std: float = 0.5, seed: int = 0) -> nn.Module:
    """Every parameter drawn from N(0, std²) (norm weights and biases matter too)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=gen, dtype=torch.float64) * std)
    return module


def relative_error_per_position(actual: torch.Tensor, expected: torch.Tensor) -> torch.Tensor:
    """``‖a_t − e_t‖ / ‖e_t‖`` at every position of ``[B, L, H]`` outputs, ``[B, L]``."""
    diff = (actual.double() - expected.double()).norm(dim=-1)
    return diff / expected.double().norm(dim=-1).clamp_min(1e-12)


def bf16_errors(
    body: nn.Module,
    reference: Callable[[nn.Module, torch.Tensor], torch.Tensor],
    *,
    length: int = 600,
    batch: int = 2,
    seed: int = 0,
) -> torch.Tensor:
    """The bf16 forward of ``body`` against ``reference`` in float64, per position ``[B, L]``.

    Both see the same values: the weights and the input rounded to bf16 once, so the error is
    the arithmetic's alone (not the rounding of the operands).
    """
    body = body.to(torch.bfloat16).eval()
    hidden = next(body.parameters()).shape[-1]
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, length, hidden, generator=gen).to(torch.bfloat16)
    with torch.no_grad():
        y16 = body(x)
        assert y16.dtype == torch.bfloat16
        y64 = reference(body.double(), x.double())
    return relative_error_per_position(y16, y64)

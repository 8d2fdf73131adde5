"""The ``ffn`` layer: ``Linear(H, e·H) → GELU → Linear(e·H, H)`` (symbol ``F``)."""

from __future__ import annotations

from typing import Any

import attrs

from hybridzoo import Capabilities, LayerSpec, hookimpl, option
from hybridzoo.formulas import feedforward_param_count
from hybridzoo.spec import int_at_least


@attrs.frozen
class FFNOptions:
    """Options of the ``ffn`` layer (user prefix ``ffn_``)."""

    expand_factor: int = option(
        4,
        doc="Inner width as a multiple of hidden_size (Edifice: 4).",
        validator=int_at_least(1),
        examples=(1, 2),
    )


def _factory(options: FFNOptions, hidden_size: int) -> Any:
    from hybridzoo.nn import FeedForward

    return FeedForward(hidden_size, options.expand_factor)


def _param_count(options: FFNOptions, hidden_size: int) -> int:
    return feedforward_param_count(hidden_size, options.expand_factor)


SPEC = LayerSpec(
    name="ffn",
    symbol="F",
    option_prefix="ffn",
    options=FFNOptions,
    factory=_factory,
    param_count=_param_count,
    description="Position-wise feed-forward: Linear(H, eH) → GELU → Linear(eH, H).",
    capabilities=Capabilities(causal=True, stateful=True, complexity="linear"),
    state_size=lambda options, hidden_size: 0,
)


@hookimpl
def hybridzoo_layer_specs() -> list[LayerSpec]:
    return [SPEC]

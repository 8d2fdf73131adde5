"""The ``gla`` layer (symbol ``G``): Gated Linear Attention (Yang et al., ICML 2024), a
data-dependent low-rank forget gate and a per-head matrix state, then an FFN sub-block."""

from __future__ import annotations

import math
from typing import Any

import attrs

from hybridzoo import Capabilities, LayerSpec, hookimpl, option
from hybridzoo.spec import float_in, int_at_least, power_of_two
from hybridzoo_plugins.gla import formulas

_POSITIVE = float_in(0.0, math.inf, low_open=True, high_open=True)


@attrs.frozen
class GLAOptions:
    """Options of the ``gla`` layer (user prefix ``gla_``)."""

    num_heads: int = option(4, doc="Number of heads.", validator=int_at_least(1), examples=(1, 2))
    head_dim: int = option(
        64, doc="Value width per head.", validator=int_at_least(1), examples=(4, 8)
    )
    expand_k: float = option(
        0.5,
        doc="Key width per head as a fraction of head_dim (head_dim · expand_k must be whole).",
        validator=_POSITIVE,
        examples=(1.0,),
    )
    gate_low_rank_dim: int = option(
        16, doc="Rank of the forget-gate projection.", validator=int_at_least(1), examples=(2,)
    )
    gate_logit_normalizer: float = option(
        16.0, doc="Divides logsigmoid of the gate logits.", validator=_POSITIVE, examples=(1.0,)
    )
    norm_eps: float = option(1e-5, doc="Epsilon of the per-head RMSNorm.", validator=_POSITIVE)
    chunk_size: int = option(
        64,
        doc="Chunk length of the recurrence kernel, a power of two (speed only; same results).",
        validator=power_of_two,
        examples=(4,),
    )
    ffn_expand_factor: int = option(
        4,
        doc="Inner width of the FFN sub-block as a multiple of hidden_size.",
        validator=int_at_least(1),
        examples=(1,),
    )

    def __attrs_post_init__(self) -> None:
        formulas.key_head_dim(self.head_dim, self.expand_k)  # raises ValueError naming both


def _factory(options: GLAOptions, hidden_size: int) -> Any:
    from hybridzoo_plugins.gla.layer import make_gla_bodies

    return make_gla_bodies(hidden_size, **attrs.asdict(options))


def _scale_options(
    options: GLAOptions, hidden_size: int, *, seq_len: int | None = None
) -> GLAOptions:
    """Heads split the width: ``head_dim = hidden_size // num_heads``, even (keys are half as
    wide with the default ``expand_k``), at least 2."""
    return attrs.evolve(options, head_dim=max(2, hidden_size // options.num_heads // 2 * 2))


def _reference(body: Any, x: Any) -> Any:
    from hybridzoo_plugins.gla.reference import reference_forward

    return reference_forward(body, x)


SPEC = LayerSpec(
    name="gla",
    symbol="G",
    option_prefix="gla",
    options=GLAOptions,
    factory=_factory,
    param_count=lambda o, h: formulas.param_count(h, **attrs.asdict(o)),
    description="Gated Linear Attention: data-dependent forget gate, per-head matrix state; "
    "then an FFN.",
    capabilities=Capabilities(causal=True, stateful=True, complexity="linear"),
    state_size=lambda o, h: formulas.state_size(h, **attrs.asdict(o)),
    sub_blocks=2,
    reference=_reference,
    scale_options=_scale_options,
)


@hookimpl
def hybridzoo_layer_specs() -> list[LayerSpec]:
    return [SPEC]

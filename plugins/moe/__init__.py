"""The ``moe`` layer (symbol ``E``): a dropless mixture-of-experts feed-forward. A router picks
the top-k of E SwiGLU experts for each token (softmax, or sigmoid scores), an optional shared
expert sees every token, and the load-balancing loss and router z-loss are exposed to the
training code (:func:`hybridzoo.aux_losses`)."""

from __future__ import annotations

import math

import attrs

from hybridzoo.plugin import (
    Capabilities,
    at_least,
    boolean,
    in_range,
    layer_spec,
    one_of,
    option,
    specs_hook,
)
from hybridzoo_plugins.moe import formulas

_COEFFICIENT = in_range(0.0, math.inf, high_open=True)


@attrs.frozen
class MoEOptions:
    """Options of the ``moe`` layer (user prefix ``moe_``)."""

    num_experts: int = option(
        8, doc="Number of routed experts E.", validator=at_least(1), examples=(3, 4)
    )
    top_k: int = option(
        2, doc="Experts per token (at most num_experts).", validator=at_least(1), examples=(3,)
    )
    expert_size: int = option(
        512,
        doc="Inner width of each SwiGLU expert (its gate and up projections; scales as "
        "2·hidden_size when budgets are matched).",
        validator=at_least(1),
        examples=(4, 8),
    )
    shared_expert_size: int = option(
        0,
        doc="Inner width of a SwiGLU expert that every token uses besides its top-k; 0 = none.",
        validator=at_least(0),
        examples=(6,),
    )
    shared_expert_gate: bool = option(
        False,
        doc="Scale the shared expert's output by sigmoid(w·x) per token (Qwen2-MoE); needs a "
        "shared expert.",
        validator=boolean,
    )
    router: str = option(
        "softmax",
        doc="Router scores: 'softmax' over the experts (Mixtral) or per-expert 'sigmoid' "
        "(DeepSeek-V3); the top-k scores weigh the experts' outputs.",
        validator=one_of("softmax", "sigmoid"),
        examples=("sigmoid",),
    )
    normalize_top_k: bool = option(
        True,
        doc="Divide the top-k scores by their sum (Mixtral; with softmax the same as a softmax "
        "over the chosen experts); False keeps the raw scores (Switch, Qwen2-MoE's default).",
        validator=boolean,
        examples=(False,),
    )
    aux_loss_coef: float = option(
        0.01,
        doc="Coefficient of the load-balancing loss E·Σ_e f_e·P_e (Switch/Mixtral form).",
        validator=_COEFFICIENT,
        examples=(0.0,),
    )
    z_loss_coef: float = option(
        0.001,
        doc="Coefficient of the router z-loss mean(logsumexp(logits)²) (ST-MoE).",
        validator=_COEFFICIENT,
        examples=(0.0,),
    )

    def __attrs_post_init__(self) -> None:
        if self.top_k > self.num_experts:
            raise ValueError(
                f"moe_top_k ({self.top_k}) must be at most moe_num_experts ({self.num_experts})"
            )
        if self.top_k == 1 and self.normalize_top_k:
            raise ValueError(
                "moe_top_k=1 with moe_normalize_top_k=True gives every token the weight 1, so "
                "the router would learn from the auxiliary loss only: set "
                "moe_normalize_top_k=False (as Switch Transformer) or moe_top_k >= 2"
            )
        if self.shared_expert_gate and self.shared_expert_size == 0:
            raise ValueError(
                "moe_shared_expert_gate=True needs a shared expert: set moe_shared_expert_size"
            )


SPEC = layer_spec(
    __name__,
    name="moe",
    symbol="E",
    options=MoEOptions,
    formulas=formulas,
    description="Dropless mixture of SwiGLU experts (top-k router, optional shared expert, "
    "load-balancing and z-loss).",
    capabilities=Capabilities(causal=True, positionwise=True),
)

hybridzoo_layer_specs = specs_hook(SPEC)

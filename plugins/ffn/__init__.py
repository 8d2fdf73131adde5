"""The ``ffn`` layer (symbol ``F``): a position-wise feed-forward ``down(act(up(x)))`` with an
exact GELU (default), a squared ReLU (Nemotron-H) or a SwiGLU (Llama, Mixtral) activation."""

from __future__ import annotations

import attrs

from hybridzoo.plugin import Capabilities, at_least, boolean, layer_spec, one_of, option, specs_hook
from hybridzoo_plugins.ffn import formulas


@attrs.frozen
class FFNOptions:
    """Options of the ``ffn`` layer (user prefix ``ffn_``)."""

    expand_factor: int = option(
        4,
        doc="Inner width as a multiple of hidden_size (Edifice: 4); see also inner_size.",
        validator=at_least(1),
        examples=(1, 2),
    )
    activation: str = option(
        "gelu",
        doc="'gelu' (exact), 'relu2' (squared ReLU, as Nemotron-H) or 'swiglu' (silu(gate)·up, "
        "as Llama; three matrices instead of two).",
        validator=one_of("gelu", "relu2", "swiglu"),
        examples=("relu2", "swiglu"),
    )
    bias: bool = option(True, doc="Biases on both linears.", validator=boolean, examples=(False,))
    inner_size: int | None = option(
        None,
        doc="The inner width itself (e.g. from a converted checkpoint); None = expand_factor · "
        "hidden_size. Give one of the two.",
        validator=at_least(1, allow_none=True),
    )

    def __attrs_post_init__(self) -> None:
        if self.inner_size is not None and self.expand_factor != 4:
            raise ValueError(
                f"give ffn_inner_size ({self.inner_size}) or ffn_expand_factor "
                f"({self.expand_factor}), not both: the inner width is one of them"
            )


SPEC = layer_spec(
    __name__,
    name="ffn",
    symbol="F",
    options=FFNOptions,
    formulas=formulas,
    description="Position-wise feed-forward: down(act(up(x))), act = GELU, relu² or SwiGLU.",
    capabilities=Capabilities(causal=True, positionwise=True),
)

hybridzoo_layer_specs = specs_hook(SPEC)

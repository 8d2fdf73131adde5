"""``NemotronHForCausalLM`` (transformers) to a :class:`~hybridzoo.HybridLM`: the architecture
lives with the Mamba-2 layer, its main block (and :mod:`.convert`, which converts its mixers).

NemotronH lists every block in ``layers_block_type`` (read by the transformers dialect of
:func:`hybridzoo.parse_pattern`): ``linear_attention`` (legacy ``mamba``, Megatron's ``M``) is a
``mamba2`` block, ``full_attention`` (``*``) an ``attention`` block with grouped-query heads, no
rotary embedding, no QK-norm and no feed-forward sub-block, ``mlp`` (``-``) an ``ffn`` block with a
squared-ReLU, each after an RMSNorm, the stream adding every block's output.

transformers' NemotronH attention is always full causal attention without biases (it reads neither
``sliding_window`` nor ``attention_bias``), and so is the converted one. Its ``moe`` blocks do not
convert: their experts are ungated squared-ReLU MLPs and the router adds a score-correction bias
with grouped top-k, which hybridzoo's ``moe`` layer (SwiGLU experts, plain top-k) does not have;
such a config is a :class:`ConversionError` naming the block and the settings.
"""

from __future__ import annotations

from typing import Any

from hybridzoo.errors import ConversionError, HybridZooError
from hybridzoo.lm.architectures import Architecture
from hybridzoo.lm.convert import DecoderLayout, LMConversion, decoder_conversion

__all__ = ["ARCHITECTURE", "LAYOUT", "from_transformers"]

LAYOUT = DecoderLayout(
    embeddings="model.embeddings.weight", layer="model.layers.{}.", final_norm="model.norm_f.weight"
)

#: our ffn body's weights under transformers' NemotronHMLP names
_MLP = {"up_proj.": "up.", "down_proj.": "down."}

_NAME = "NemotronHForCausalLM"


def _moe_error(config: Any, index: int) -> ConversionError:
    return ConversionError(
        f"{_NAME}: block {index} is a mixture of experts (layers_block_type[{index}]='moe'), "
        f"which does not convert: its experts are ungated squared-ReLU MLPs "
        f"(mlp_hidden_act={config.mlp_hidden_act!r}) and its router adds a score-correction "
        f"bias with grouped top-k (n_group={config.n_group}, topk_group={config.topk_group}, "
        f"routed_scaling_factor={config.routed_scaling_factor}); hybridzoo's moe layer has "
        "SwiGLU experts and plain top-k routing. Convert a config whose layers_block_type has "
        "no 'moe'"
    )


def _layers(config: Any) -> tuple[list[str], dict[str, Any]]:
    """The layer of each block and the options the dialect reads from the config."""
    from hybridzoo import parse_pattern

    try:
        pattern = parse_pattern(config, dialect="transformers")
    except HybridZooError as exc:
        raise ConversionError(f"{_NAME}: {exc}") from None
    if pattern.options and any(pattern.options):
        raise ConversionError(f"{_NAME}: per-block settings {pattern.options} do not convert")
    return list(pattern.layers), dict(pattern.layer_options)


def from_transformers(model: Any) -> LMConversion:
    """The pattern, options and weights of a transformers ``NemotronHForCausalLM``."""
    from hybridzoo_plugins.mamba2.architecture import mamba2_options

    config = model.config
    layers, options = _layers(config)
    for i, name in enumerate(layers):
        if name == "moe":
            raise _moe_error(config, i)
    if "ffn" in layers and config.mlp_hidden_act != "relu2":
        raise ConversionError(
            f"{_NAME}: mlp_hidden_act={config.mlp_hidden_act!r} does not convert (the MLP "
            "blocks convert with 'relu2', NemotronH's)"
        )
    if "mamba2" in layers:
        options.update(mamba2_options(config, _NAME))
    if "attention" in layers:
        options.update(
            attention_num_heads=config.num_attention_heads,
            attention_num_kv_heads=config.num_key_value_heads,
            attention_head_dim=config.head_dim,
            attention_window_size=None,
            attention_bias=False,
        )
    if "ffn" in layers:
        options.update(ffn_inner_size=config.intermediate_size, ffn_bias=bool(config.mlp_bias))
    renames = [_MLP if name == "ffn" else None for name in layers]
    return decoder_conversion(model, LAYOUT, layers, options, renames=renames)


ARCHITECTURE = Architecture(
    name=_NAME, model_type="nemotron_h", from_transformers=from_transformers
)

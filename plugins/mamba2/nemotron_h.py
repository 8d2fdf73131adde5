"""``NemotronHForCausalLM`` (transformers) to and from a :class:`~hybridzoo.HybridLM`: the
architecture lives with the Mamba-2 layer, its main block (and :mod:`.convert`, which converts its
mixers).

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

The way back writes the ``NemotronHConfig`` of a model, reads it again as the way in would, and
refuses (naming each option, ours and NemotronH's) whatever would not come back the same: rotary
embeddings, a sliding window, QK-norm, an attention FFN, a feed-forward other than squared ReLU,
a Mamba-2 time-step clamp other than NemotronH's ``(time_step_min, inf)``, a norm epsilon of its
own, ...
"""

from __future__ import annotations

from typing import Any

import attrs

from hybridzoo.errors import ConversionError, HybridZooError
from hybridzoo.lm.architectures import Architecture
from hybridzoo.lm.convert import (
    DecoderLayout,
    LMConversion,
    decoder_bodies,
    decoder_conversion,
    export_decoder,
    import_transformers,
)

__all__ = ["ARCHITECTURE", "LAYOUT", "from_transformers", "to_transformers"]

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


def _options(config: Any) -> tuple[list[str], dict[str, Any]]:
    """The layer of each block and the :func:`hybridzoo.build_lm` layer options of a config."""
    from hybridzoo_plugins.mamba2.architecture import mamba2_options

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
    return layers, options


def _renames(layers: list[str]) -> list[dict[str, str] | None]:
    return [_MLP if name == "ffn" else None for name in layers]


def from_transformers(model: Any) -> LMConversion:
    """The pattern, options and weights of a transformers ``NemotronHForCausalLM``."""
    layers, options = _options(model.config)
    return decoder_conversion(model, LAYOUT, layers, options, renames=_renames(layers))


def _block_type(name: str) -> str:
    """NemotronH's ``layers_block_type`` entry for layer ``name`` (its layer spec's notation)."""
    from hybridzoo import get_layer
    from hybridzoo.notation import notations_for

    return notations_for(get_layer(name).notations, "transformers", "nemotron_h")[0].token


def _config_fields(lm: Any) -> dict[str, Any]:
    """The ``NemotronHConfig`` fields of ``lm``'s sizes (the rest is checked by reading back)."""
    bodies = decoder_bodies(lm, {"mamba2", "attention", "ffn"}, _NAME)
    b = lm.config.backbone
    fields: dict[str, Any] = {
        "layers_block_type": [_block_type(name) for name in b.pattern],
        "hidden_size": b.hidden_size,
        "layer_norm_epsilon": b.norm_eps,
    }
    first = {type(body).__name__: body for body in reversed(bodies)}
    if "Mamba2Mixer" in first:
        m = first["Mamba2Mixer"]
        fields.update(
            mamba_num_heads=m.num_heads,
            mamba_head_dim=m.head_dim,
            ssm_state_size=m.state_size,
            n_groups=m.num_groups,
            conv_kernel=m.conv1d.kernel_size,
            use_conv_bias=m.conv1d.bias is not None,
            use_bias=m.in_proj.bias is not None,
            time_step_min=m.dt_min,
            time_step_max=m.dt_max,
            time_step_floor=m.dt_init_floor,
        )
    if "SlidingWindowAttention" in first:
        a = first["SlidingWindowAttention"]
        fields.update(
            num_attention_heads=a.num_heads, num_key_value_heads=a.num_kv_heads, head_dim=a.head_dim
        )
    if "FeedForward" in first:
        f = first["FeedForward"]
        fields.update(intermediate_size=f.inner_size, mlp_bias=f.up.bias is not None)
    return fields


#: fields that the way back writes from the built modules (a width spelt another way, ``None``
#: for "derived": the weights' shapes carry them) or that change speed only
_WRITTEN_FROM_MODULES = {
    "mamba2": ("chunk_size",),
    "attention": ("num_kv_heads", "head_dim"),
    "ffn": ("expand_factor", "inner_size"),
}


def _differences(lm: Any, config: Any) -> list[str]:
    """The options of ``lm`` that the way in would not give back from ``config``."""
    from hybridzoo import LMConfig, get_layer

    layers, options = _options(config)
    b = lm.config.backbone
    sizes = {"vocab_size": lm.vocab_size, "hidden_size": b.hidden_size, "norm": "rmsnorm"}
    back = LMConfig.create(layers, norm_eps=config.layer_norm_epsilon, **sizes, **options)
    out = []
    for name in dict.fromkeys(b.pattern):
        ours, theirs = b.options_of(name), back.backbone.options_of(name)
        prefix, skip = get_layer(name).option_prefix, _WRITTEN_FROM_MODULES[name]
        for field in attrs.fields(type(ours)):
            mine, its = getattr(ours, field.name), getattr(theirs, field.name)
            if field.name not in skip and mine != its:
                out.append(f"{prefix}_{field.name}={mine!r} (NemotronH: {its!r})")
    return out


def to_transformers(lm: Any) -> Any:
    """A transformers ``NemotronHForCausalLM`` with the weights of ``lm`` (blocks of ``mamba2``,
    ``attention`` and ``ffn`` as NemotronH has them); a :class:`ConversionError` names every
    option that NemotronH cannot express."""
    fields = _config_fields(lm)
    transformers = import_transformers()
    config = transformers.NemotronHConfig(
        vocab_size=lm.vocab_size, tie_word_embeddings=lm.tied, **fields
    )
    differences = _differences(lm, config)
    if differences:
        raise ConversionError(f"{_NAME} cannot express {'; '.join(differences)}")
    renames = _renames(list(lm.config.backbone.pattern))
    return export_decoder(lm, LAYOUT, _NAME, "NemotronHConfig", renames=renames, **fields)


ARCHITECTURE = Architecture(
    name=_NAME,
    model_type="nemotron_h",
    from_transformers=from_transformers,
    to_transformers=to_transformers,
)

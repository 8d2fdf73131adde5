"""``MambaForCausalLM`` (transformers) to and from a :class:`~hybridzoo.HybridLM` of ``mamba``
blocks: RMSNorm pre-norms, the mixers (same weights, see :mod:`.convert`), RMSNorm, a head.

transformers keeps the residual stream in float32 for ``residual_in_fp32`` (its default) and
hybridzoo in the model's dtype: the same in float32 and float64; the way back writes
``residual_in_fp32=False``, which is what hybridzoo computes.
"""

from __future__ import annotations

from typing import Any

from hybridzoo.lm.architectures import Architecture
from hybridzoo.lm.convert import (
    DecoderLayout,
    LMConversion,
    decoder_bodies,
    decoder_conversion,
    export_decoder,
    layer_options,
)

__all__ = ["ARCHITECTURE", "LAYOUT", "from_transformers", "to_transformers"]

LAYOUT = DecoderLayout(
    embeddings="backbone.embeddings.weight",
    layer="backbone.layers.{}.",
    final_norm="backbone.norm_f.weight",
)


def from_transformers(model: Any) -> LMConversion:
    """The pattern, options and weights of a transformers ``MambaForCausalLM``."""
    from hybridzoo_plugins.mamba.convert import mixer_kwargs_from_config

    options = layer_options(mixer_kwargs_from_config, model.config, "mamba", "MambaForCausalLM")
    pattern = ["mamba"] * int(model.config.num_hidden_layers)
    return decoder_conversion(model, LAYOUT, pattern, options)


def to_transformers(lm: Any) -> Any:
    """A transformers ``MambaForCausalLM`` with the weights of ``lm`` (a decoder of ``mamba``
    blocks); a :class:`ConversionError` names what it cannot express."""
    mixer = decoder_bodies(lm, {"mamba"}, "MambaForCausalLM")[0]
    b = lm.config.backbone
    o = b.options_of("mamba")
    return export_decoder(
        lm,
        LAYOUT,
        "MambaForCausalLM",
        "MambaConfig",
        hidden_size=b.hidden_size,
        state_size=o.state_size,
        intermediate_size=mixer.intermediate_size,
        conv_kernel=o.conv_size,
        time_step_rank=mixer.dt_rank,
        use_conv_bias=o.conv_bias,
        use_bias=o.bias,
        time_step_min=o.dt_min,
        time_step_max=o.dt_max,
        time_step_floor=o.dt_init_floor,
        hidden_act="silu",
        layer_norm_epsilon=b.norm_eps,
        residual_in_fp32=False,
    )


ARCHITECTURE = Architecture(
    name="MambaForCausalLM",
    model_type="mamba",
    from_transformers=from_transformers,
    to_transformers=to_transformers,
)

"""``Mamba2ForCausalLM`` (transformers) to and from a :class:`~hybridzoo.HybridLM` of ``mamba2``
blocks: RMSNorm pre-norms, the mixers (same weights, see :mod:`.convert`), RMSNorm, a head.

As for Mamba-1, transformers' ``residual_in_fp32`` changes nothing in float32 and float64; the
way back writes ``residual_in_fp32=False``, which is what hybridzoo computes in any dtype.
"""

from __future__ import annotations

from typing import Any

from hybridzoo.errors import ConversionError
from hybridzoo.lm.architectures import Architecture
from hybridzoo.lm.convert import (
    DecoderLayout,
    LMConversion,
    decoder_bodies,
    decoder_conversion,
    export_decoder,
    layer_options,
)

__all__ = ["ARCHITECTURE", "LAYOUT", "from_transformers", "mamba2_options", "to_transformers"]

LAYOUT = DecoderLayout(
    embeddings="backbone.embeddings.weight",
    layer="backbone.layers.{}.",
    final_norm="backbone.norm_f.weight",
)


def mamba2_options(config: Any, what: str) -> dict[str, Any]:
    """The ``mamba2_*`` options of a ``Mamba2Config`` or ``NemotronHConfig``; a setting with
    no equivalent is a :class:`ConversionError` naming it (``what``: the model class)."""
    from hybridzoo_plugins.mamba2.convert import mixer_kwargs_from_config

    return layer_options(mixer_kwargs_from_config, config, "mamba2", what)


def from_transformers(model: Any) -> LMConversion:
    """The pattern, options and weights of a transformers ``Mamba2ForCausalLM``."""
    options = mamba2_options(model.config, "Mamba2ForCausalLM")
    pattern = ["mamba2"] * int(model.config.num_hidden_layers)
    return decoder_conversion(model, LAYOUT, pattern, options)


def to_transformers(lm: Any) -> Any:
    """A transformers ``Mamba2ForCausalLM`` with the weights of ``lm`` (a decoder of ``mamba2``
    blocks); a :class:`ConversionError` names what it cannot express."""
    from hybridzoo_plugins.mamba2.convert import mamba2_config_kwargs

    mixer = decoder_bodies(lm, {"mamba2"}, "Mamba2ForCausalLM")[0]
    try:
        fields = mamba2_config_kwargs(mixer)
    except ValueError as exc:
        raise ConversionError(f"Mamba2ForCausalLM: {exc}") from None
    b = lm.config.backbone
    if fields["layer_norm_epsilon"] != b.norm_eps:
        raise ConversionError(
            "Mamba2ForCausalLM has one epsilon for its norms and the mixers' gated norm: "
            f"norm_eps={b.norm_eps} differs from mamba2_norm_eps={fields['layer_norm_epsilon']}"
        )
    return export_decoder(
        lm, LAYOUT, "Mamba2ForCausalLM", "Mamba2Config", **fields, residual_in_fp32=False
    )


ARCHITECTURE = Architecture(
    name="Mamba2ForCausalLM",
    model_type="mamba2",
    from_transformers=from_transformers,
    to_transformers=to_transformers,
)

"""Checkpoints from and to transformers: :func:`from_transformers` and :func:`to_transformers`.

The core converts no architecture itself: it finds the model's :class:`~hybridzoo.lm.
architectures.Architecture` (filled in by the plugins, keyed by ``config.model_type``), which
returns an :class:`LMConversion` (the pattern, the :func:`hybridzoo.build_lm` options and the
weights), and builds and loads the :class:`~hybridzoo.HybridLM`. Every weight of the source is
placed, and every weight of the new model is filled: anything left over is a
:class:`~hybridzoo.errors.ConversionError`, never dropped.

:class:`DecoderLayout` and :func:`decoder_state_dict` / :func:`layout_state_dict` are the
renaming that most decoders need (an embedding, per layer a pre-norm and a mixer, a final norm,
a head), for the architectures to share.

transformers itself is not imported here: a model is anything with ``config`` and
``state_dict()``.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import attrs

from hybridzoo.errors import ConversionError
from hybridzoo.lm.architectures import architectures, find_architecture
from hybridzoo.patterns import PatternLike

if TYPE_CHECKING:  # pragma: no cover
    from torch import Tensor

    from hybridzoo.lm.model import HybridLM

__all__ = [
    "DecoderLayout",
    "LMConversion",
    "decoder_bodies",
    "decoder_conversion",
    "decoder_state_dict",
    "export_decoder",
    "from_transformers",
    "import_transformers",
    "layer_options",
    "layout_state_dict",
    "to_transformers",
]

#: where the pre-norm and the body of block ``i`` sit in a :class:`~hybridzoo.HybridLM`
_BLOCK = "backbone.blocks.{}.sub_blocks.0."

#: per layer, the names inside its mixer that differ from our body's (``None``: all the same)
Renames = Sequence[Mapping[str, str] | None] | None


@attrs.frozen
class LMConversion:
    """What an architecture's ``from_transformers`` returns.

    Attributes:
        pattern: the hybridzoo pattern (as :func:`hybridzoo.build_lm` takes it).
        options: the other :func:`hybridzoo.build_lm` arguments (``vocab_size``,
            ``tie_embeddings``, ``hidden_size``, ``norm``, layer options, ...).
        state_dict: the weights, under the :class:`~hybridzoo.HybridLM`'s names.
    """

    pattern: PatternLike
    options: dict[str, Any]
    state_dict: dict[str, Tensor]


@attrs.frozen
class DecoderLayout:
    """The names of a decoder's weights in a transformers state dict.

    Attributes:
        embeddings: the token embedding, e.g. ``"backbone.embeddings.weight"``.
        layer: the prefix of layer ``i`` with ``{}`` for ``i``, e.g. ``"backbone.layers.{}."``.
        final_norm: the final norm's weight, e.g. ``"backbone.norm_f.weight"``.
        norm: the pre-norm inside a layer.
        mixer: the layer's module (our block's body) inside a layer.
        head: the output projection (absent from the result when the embeddings are tied).
    """

    embeddings: str
    layer: str
    final_norm: str
    norm: str = "norm."
    mixer: str = "mixer."
    head: str = "lm_head.weight"

    def pairs(self, num_layers: int, tied: bool, renames: Renames = None) -> list[tuple[str, str]]:
        """``(transformers prefix or name, ours)`` for every part; ``renames[i]`` maps names
        (or prefixes) inside layer ``i``'s mixer to our body's, where they differ."""
        out = [(self.embeddings, "embedding.weight"), (self.final_norm, "backbone.norm.weight")]
        if not tied:
            out.append((self.head, "head.weight"))
        for i in range(num_layers):
            layer, block = self.layer.format(i), _BLOCK.format(i)
            mixer, body = layer + self.mixer, block + "body."
            names = (renames[i] if renames is not None else None) or {}
            out += [(mixer + theirs, body + ours) for theirs, ours in names.items()]
            out += [(layer + self.norm, block + "norm."), (mixer, body)]
        return out


def _renamed(
    state: Mapping[str, Tensor], pairs: Sequence[tuple[str, str]], what: str
) -> dict[str, Tensor]:
    out: dict[str, Tensor] = {}
    left = dict(state)
    for source, target in pairs:
        if source.endswith("."):
            for key in [k for k in left if k.startswith(source)]:
                out[target + key[len(source) :]] = left.pop(key)
        elif source in left:
            out[target] = left.pop(source)
        else:
            raise ConversionError(f"{what}: no weight {source!r} (keys: {sorted(state)[:8]}...)")
    if left:
        raise ConversionError(f"{what}: weights with no place in the other model: {sorted(left)}")
    return out


def decoder_state_dict(
    state: Mapping[str, Tensor],
    layout: DecoderLayout,
    num_layers: int,
    *,
    tied: bool,
    renames: Renames = None,
) -> dict[str, Tensor]:
    """A transformers decoder's weights under a :class:`~hybridzoo.HybridLM`'s names (each
    layer one block of one sub-block, its mixer's weights named as our body's unless
    ``renames`` says otherwise, see :meth:`DecoderLayout.pairs`). With ``tied`` the head,
    which is the embedding, is left out; a weight that has no place is a
    :class:`ConversionError`."""
    state = dict(state)
    if tied:
        state.pop(layout.head, None)
    return _renamed(state, layout.pairs(num_layers, tied, renames), "from transformers")


def layout_state_dict(
    state: Mapping[str, Tensor],
    layout: DecoderLayout,
    num_layers: int,
    *,
    tied: bool,
    renames: Renames = None,
) -> dict[str, Tensor]:
    """The way back of :func:`decoder_state_dict` (the same ``renames``): a
    :class:`~hybridzoo.HybridLM`'s weights under the transformers decoder's names (the head is
    the embedding when ``tied``)."""
    pairs = [(ours, theirs) for theirs, ours in layout.pairs(num_layers, tied, renames)]
    out = _renamed(state, pairs, "to transformers")
    if tied:
        out[layout.head] = out[layout.embeddings]
    return out


def layer_options(
    make: Callable[[Any], dict[str, Any]], config: Any, prefix: str, what: str
) -> dict[str, Any]:
    """A layer converter's keywords ``make(config)`` as :func:`hybridzoo.build_lm` options
    ``<prefix>_<field>`` (its ``hidden_size`` is the model's); a ``ValueError`` of ``make`` is a
    :class:`ConversionError` naming ``what``, the transformers class."""
    try:
        kwargs = make(config)
    except ValueError as exc:
        raise ConversionError(f"{what}: {exc}") from None
    kwargs.pop("hidden_size", None)
    return {f"{prefix}_{k}": v for k, v in kwargs.items()}


def decoder_conversion(
    model: Any,
    layout: DecoderLayout,
    pattern: Sequence[str],
    options: Mapping[str, Any],
    *,
    renames: Renames = None,
) -> LMConversion:
    """The :class:`LMConversion` of a transformers decoder as :class:`DecoderLayout` describes
    it, whose config has ``vocab_size``, ``hidden_size``, ``tie_word_embeddings`` and
    ``layer_norm_epsilon`` (RMSNorms): ``pattern`` one layer per block, ``options`` the
    layers' options (no dropout: a converted model is for inference first), ``renames`` as
    :func:`decoder_state_dict` takes them."""
    config = model.config
    tied = bool(getattr(config, "tie_word_embeddings", False))
    build = {
        "vocab_size": int(config.vocab_size),
        "tie_embeddings": tied,
        "hidden_size": int(config.hidden_size),
        "norm": "rmsnorm",
        "norm_eps": float(config.layer_norm_epsilon),
        "dropout": 0.0,
        **options,
    }
    state = decoder_state_dict(model.state_dict(), layout, len(pattern), tied=tied, renames=renames)
    return LMConversion(list(pattern), build, state)


def export_decoder(
    lm: HybridLM,
    layout: DecoderLayout,
    model_class: str,
    config_class: str,
    *,
    renames: Renames = None,
    **fields: Any,
) -> Any:
    """transformers' ``model_class`` (laid out as ``layout``, its mixers' names as ``renames``
    maps them, see :meth:`DecoderLayout.pairs`) with the weights of ``lm``, in its dtype,
    device and train/eval mode: its ``config_class`` made of ``fields`` and the sizes every
    decoder has (``vocab_size``, ``num_hidden_layers``, ``tie_word_embeddings``)."""
    transformers = import_transformers()
    config = getattr(transformers, config_class)(
        vocab_size=lm.vocab_size,
        num_hidden_layers=len(lm.backbone.blocks),
        tie_word_embeddings=lm.tied,
        **fields,
    )
    ref = lm.embedding.weight
    model = getattr(transformers, model_class)(config).to(device=ref.device, dtype=ref.dtype)
    blocks = len(lm.backbone.blocks)
    state = layout_state_dict(lm.state_dict(), layout, blocks, tied=lm.tied, renames=renames)
    if layout.head not in model.state_dict():
        state.pop(layout.head, None)
    model.load_state_dict(state, strict=True)
    return model.train(lm.training)


def import_transformers() -> Any:
    """The ``transformers`` module; a :class:`ConversionError` saying how to install it."""
    try:
        import transformers
    except ImportError as exc:
        raise ConversionError(
            f"converting to transformers needs the transformers package ({exc}): "
            "pip install transformers"
        ) from exc
    return transformers


def decoder_bodies(lm: HybridLM, layers: Collection[str], what: str) -> list[Any]:
    """The bodies of ``lm``, one per block, when it is a plain decoder of ``layers`` as
    transformers' decoders are (RMSNorm pre-norms and final norm, the embedding as wide as the
    blocks, no positional encoding or learned positions, no shared layers, no per-position
    options); a
    :class:`ConversionError` that names what ``lm`` has that ``what`` cannot express
    otherwise."""
    b = lm.config.backbone
    problems = []
    others = sorted(set(b.pattern) - set(layers))
    if others:
        problems.append(f"layers {others} (it has {', '.join(sorted(layers))} only)")
    if b.norm != "rmsnorm":
        problems.append(f"norm={b.norm!r} (it has RMSNorm: norm='rmsnorm')")
    if b.embed_dim != b.hidden_size:
        problems.append(f"embed_dim={b.embed_dim} != hidden_size={b.hidden_size}")
    if b.positional_encoding is not None:
        problems.append(f"positional_encoding={b.positional_encoding!r}")
    if lm.config.max_positions is not None:
        problems.append(f"max_positions={lm.config.max_positions} (learned absolute positions)")
    if b.shared_layers:
        problems.append(f"shared_layers={dict(b.shared_layers)!r}")
    if b.position_options:
        problems.append("options set per position (one record per layer type only)")
    blocks = lm.backbone.blocks
    if not problems and any(len(block.sub_blocks) != 1 for block in blocks):
        problems.append("blocks of several sub-blocks")
    if problems:
        raise ConversionError(f"{what} cannot express {'; '.join(problems)}")
    return [block.sub_blocks[0].body for block in blocks]


def _check_model(model: Any, what: str) -> Any:
    config = getattr(model, "config", None)
    if config is None or not callable(getattr(model, "state_dict", None)):
        raise ConversionError(
            f"{what} takes a transformers model (with .config and .state_dict()), got "
            f"{type(model).__name__}"
        )
    return config


def from_transformers(model: Any) -> HybridLM:
    """A :class:`~hybridzoo.HybridLM` with the weights of a transformers causal language model
    (for example ``MambaForCausalLM``, ``Mamba2ForCausalLM``, ``NemotronHForCausalLM``: those
    whose ``config.model_type`` an installed architecture converts), giving the same logits.

    The pattern and options come from the model's config (``lm.config`` shows them; so does
    ``print(hybridzoo.visualize(lm.config.backbone))``). The new model has the dtype and device
    of the weights and the source's train/eval mode.

    Raises:
        ConversionError: for a model no architecture converts, or a setting of its config
            that has no hybridzoo equivalent (named).
    """
    from hybridzoo.lm.builder import build_lm

    config = _check_model(model, "from_transformers")
    arch = find_architecture(getattr(config, "model_type", None), type(model).__name__)
    conversion = arch.from_transformers(model)
    weights = conversion.state_dict
    ref = next(v for v in weights.values() if v.is_floating_point())
    lm = build_lm(conversion.pattern, **conversion.options).to(device=ref.device, dtype=ref.dtype)
    result = lm.load_state_dict(weights, strict=False)
    if result.missing_keys or result.unexpected_keys:
        raise ConversionError(
            f"{arch.name}: the converted weights do not fit the model built from its config: "
            f"missing {result.missing_keys}, unexpected {result.unexpected_keys}"
        )
    return lm.train(bool(getattr(model, "training", False)))


def to_transformers(lm: HybridLM, model_type: str | None = None) -> Any:
    """The transformers model of ``lm`` (same weights, same logits): the architecture of
    ``model_type`` (a transformers ``config.model_type``), or the first that can express
    ``lm``.

    Raises:
        ConversionError: naming, per architecture tried, what ``lm`` has that it cannot express.
    """
    from hybridzoo.lm.model import HybridLM

    if not isinstance(lm, HybridLM):
        raise ConversionError(f"to_transformers takes a HybridLM, got {type(lm).__name__}")
    if model_type is not None:
        arch = find_architecture(model_type, f"model_type={model_type!r}")
        if arch.to_transformers is None:
            raise ConversionError(f"{arch.name} ({model_type}) has no conversion back")
        return arch.to_transformers(lm)
    problems = []
    for arch in architectures():
        if arch.to_transformers is None:
            continue
        try:
            return arch.to_transformers(lm)
        except ConversionError as exc:
            problems.append(f"{arch.name}: {exc}")
    raise ConversionError(
        "no transformers architecture expresses this model: " + ("; ".join(problems) or "none")
    )

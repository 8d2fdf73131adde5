"""``LMConfig``: everything needed to rebuild a :class:`~hybridzoo.HybridLM`; no torch.

A language model is a token embedding ``[vocab_size, embed_dim]``, a backbone (a
:class:`~hybridzoo.HybridConfig` with ``output="sequence"``: its blocks and final norm) and a
head ``[vocab_size, hidden_size]``, which is the embedding matrix itself when
``tie_embeddings`` (then ``embed_dim`` must equal ``hidden_size``). With ``max_positions`` set,
a table of learned absolute positions ``[max_positions, embed_dim]`` (GPT-2's) is added to the
token embedding. Sizes are exact and come from the same path as :func:`hybridzoo.param_count`
(:meth:`LMConfig.param_count`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import attrs

from hybridzoo.config import HybridConfig
from hybridzoo.errors import ConfigError, HybridZooError, OptionError, did_you_mean
from hybridzoo.model_options import with_model_options
from hybridzoo.patterns import PatternLike
from hybridzoo.registry import Registry
from hybridzoo.validate import at_least, boolean

__all__ = ["LM_CONFIG_VERSION", "LMConfig"]

LM_CONFIG_VERSION = 1


def _backbone(_instance: Any, _attribute: Any, value: Any) -> None:
    if not isinstance(value, HybridConfig):
        raise ConfigError(f"backbone must be a HybridConfig, got {type(value).__name__}")
    if value.output != "sequence":
        raise ConfigError(
            f"a language model's backbone returns every position (output='sequence'), got "
            f"output={value.output!r}"
        )


def _check(validator: Any, name: str, value: Any) -> Any:
    try:
        return validator.check(name, value)
    except (TypeError, ValueError) as exc:
        raise OptionError(str(exc)) from None


@attrs.frozen(kw_only=True, repr=False)
class LMConfig:
    """A validated, immutable language-model configuration.

    Make one with :meth:`create` (as :func:`hybridzoo.build_lm` takes its arguments) or
    :meth:`from_dict`.

    Attributes:
        backbone: the hybrid stack, ``output="sequence"``; ``backbone.embed_dim`` is the width
            of the token embedding.
        vocab_size: number of token ids.
        tie_embeddings: the head is the embedding matrix (one set of weights, counted once).
        max_positions: ``None`` (no learned positions), or learned absolute positions over
            that many tokens: an ``nn.Embedding(max_positions, embed_dim)`` whose row ``t`` is
            added to the embedding of the token at position ``t`` (counted from 0 in every
            packed document, and by each row of a step-mode state); a position past the table
            is an error naming the limit. Independent of the backbone's
            ``positional_encoding``.
    """

    backbone: HybridConfig = attrs.field(validator=_backbone)
    vocab_size: int = attrs.field(converter=lambda v: _check(at_least(1), "vocab_size", v))
    tie_embeddings: bool = attrs.field(
        default=True, converter=lambda v: _check(boolean, "tie_embeddings", v)
    )
    max_positions: int | None = attrs.field(
        default=None,
        converter=lambda v: _check(at_least(1, allow_none=True), "max_positions", v),
    )

    def __attrs_post_init__(self) -> None:
        b = self.backbone
        if self.tie_embeddings and b.embed_dim != b.hidden_size:
            raise OptionError(
                f"tie_embeddings=True shares the embedding with the head, so embed_dim must equal "
                f"hidden_size; got embed_dim={b.embed_dim}, hidden_size={b.hidden_size}: leave "
                "embed_dim unset or pass tie_embeddings=False"
            )

    @classmethod
    @with_model_options
    def create(
        cls,
        pattern: PatternLike,
        *,
        vocab_size: int,
        tie_embeddings: bool = True,
        max_positions: int | None = None,
        registry: Registry | None = None,
        **options: Any,
    ) -> LMConfig:
        """Validate a :func:`hybridzoo.build_lm` call: ``vocab_size``, ``tie_embeddings`` and
        ``max_positions`` are the language model's (see the class); the backbone's options are
        those of :func:`hybridzoo.build` (``embed_dim`` defaults to ``hidden_size``; ``output``
        is ``"sequence"``, the only value a language model takes)."""
        output = options.pop("output", "sequence")
        if output != "sequence":
            raise OptionError(
                f"a language model's backbone returns every position: output must be "
                f"'sequence' (its default here), got {output!r}"
            )
        backbone = HybridConfig.create(pattern, registry=registry, output="sequence", **options)
        return cls(
            backbone=backbone,
            vocab_size=vocab_size,
            tie_embeddings=tie_embeddings,
            max_positions=max_positions,
        )

    # -- views -----------------------------------------------------------------------------------

    @property
    def pattern(self) -> tuple[str, ...]:
        return self.backbone.pattern

    @property
    def hidden_size(self) -> int:
        return self.backbone.hidden_size

    @property
    def embed_dim(self) -> int:
        return self.backbone.embed_dim

    def layer_names(self) -> list[str]:
        """Every layer type of the backbone (see :meth:`HybridConfig.layer_names`)."""
        return self.backbone.layer_names()

    def embedding_param_counts(self) -> dict[str, int]:
        """Parameters of the ``embedding``, the learned ``positions`` and the ``head`` (0 when
        tied: the tied matrix is the embedding's)."""
        return {
            "embedding": self.vocab_size * self.embed_dim,
            "positions": (self.max_positions or 0) * self.embed_dim,
            "head": 0 if self.tie_embeddings else self.vocab_size * self.hidden_size,
        }

    def embedding_param_count(self) -> int:
        """Parameters of the embedding, the learned positions and the head (the tied matrix
        once)."""
        return sum(self.embedding_param_counts().values())

    def param_count(self, *, registry: Registry | None = None) -> int:
        """The exact number of parameters of the model, without building it."""
        from hybridzoo.counting import param_count

        return param_count(self.backbone, registry=registry) + self.embedding_param_count()

    def replace(self, *, registry: Registry | None = None, **changes: Any) -> LMConfig:
        """A copy with some arguments of :meth:`create` changed (``vocab_size``,
        ``tie_embeddings``, ``max_positions``, ``pattern``, model and layer options),
        re-validated. An embedding as wide as the hidden size stays so when ``hidden_size``
        changes (unless ``embed_dim`` is given too)."""
        lm = {name: changes.pop(name, getattr(self, name)) for name in _LM_FIELDS}
        keeps_width = self.embed_dim == self.hidden_size and "embed_dim" not in changes
        if keeps_width and "hidden_size" in changes:
            changes["embed_dim"] = changes["hidden_size"]
        backbone = self.backbone.replace(registry=registry, **changes) if changes else self.backbone
        return LMConfig(backbone=backbone, **lm)

    def __repr__(self) -> str:
        return (
            f"LMConfig(vocab_size={self.vocab_size}, tie_embeddings={self.tie_embeddings}, "
            f"max_positions={self.max_positions}, backbone={self.backbone!r})"
        )

    # -- serialisation ---------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict; the backbone as :meth:`HybridConfig.to_dict` writes it."""
        return {
            "lm_config_version": LM_CONFIG_VERSION,
            **{name: getattr(self, name) for name in _LM_FIELDS},
            "backbone": self.backbone.to_dict(),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, registry: Registry | None = None) -> LMConfig:
        """Rebuild (and re-validate) a config from :meth:`to_dict`'s output; a field it lacks
        takes its default (a config written before ``max_positions`` existed has none)."""
        if not isinstance(data, Mapping):
            raise ConfigError(f"an LM config must be a mapping, got {type(data).__name__}")
        known = {"lm_config_version", "backbone", *_LM_FIELDS}
        unknown = sorted(map(str, set(data) - known))
        if unknown:
            raise ConfigError(
                f"unknown LM config keys {unknown}.{did_you_mean(unknown[0], known)} "
                f"Valid: {', '.join(sorted(known))}"
            )
        version = data.get("lm_config_version", LM_CONFIG_VERSION)
        if type(version) is not int or version != LM_CONFIG_VERSION:
            raise ConfigError(
                f"lm_config_version must be the integer {LM_CONFIG_VERSION}, got {version!r}; a "
                "config from a newer hybridzoo needs that one (pip install -U hybridzoo)"
            )
        for key in ("vocab_size", "backbone"):
            if key not in data:
                raise ConfigError(f"an LM config needs {key!r}")
        try:
            backbone = HybridConfig.from_dict(data["backbone"], registry=registry)
        except HybridZooError as exc:
            raise ConfigError(f"backbone: {exc}") from exc
        return cls(backbone=backbone, **{k: data[k] for k in _LM_FIELDS if k in data})

    def to_json(self, **kwargs: Any) -> str:
        """:meth:`to_dict` as JSON text (indented by 2 unless told otherwise)."""
        return json.dumps(self.to_dict(), **({"indent": 2} | kwargs))


#: the fields of :class:`LMConfig` besides its backbone (what ``to_dict`` writes beside it)
_LM_FIELDS: tuple[str, ...] = tuple(f.name for f in attrs.fields(LMConfig) if f.name != "backbone")

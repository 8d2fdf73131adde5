"""``build_lm`` and ``lm_param_count``: from a pattern and options to a :class:`HybridLM`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from hybridzoo.lm.config import LMConfig
from hybridzoo.model_options import describe_model_options, with_model_options
from hybridzoo.patterns import PatternLike
from hybridzoo.registry import Registry

if TYPE_CHECKING:  # pragma: no cover
    from hybridzoo.lm.model import HybridLM

__all__ = ["build_lm", "lm_param_count"]


@with_model_options
def build_lm(
    pattern: PatternLike | LMConfig,
    *,
    vocab_size: int | None = None,
    tie_embeddings: bool = True,
    max_positions: int | None = None,
    registry: Registry | None = None,
    **options: Any,
) -> HybridLM:
    """Build a language model: token embedding, the hybrid backbone of ``pattern`` (its blocks
    and final norm, ``output="sequence"``) and a head tied to the embedding.

        >>> lm = hybridzoo.build_lm("C C P", vocab_size=512, hidden_size=64)  # doctest: +SKIP
        >>> lm(torch.randint(512, (2, 16))).shape                             # doctest: +SKIP
        torch.Size([2, 16, 512])

    Args:
        pattern: as :func:`hybridzoo.build` takes it, or an :class:`LMConfig` (then no other
            argument is accepted).
        vocab_size: number of token ids (required with a pattern).
        tie_embeddings: the head is the embedding matrix (needs ``embed_dim == hidden_size``,
            the default).
        max_positions: ``None`` (default), or learned absolute positions (GPT-2's) over that
            many tokens, added to the token embedding (see :class:`LMConfig`).
        registry: where layers are looked up (default: :func:`hybridzoo.get_registry`).
        **options: the model options below and the layers' ``<prefix>_<field>`` options, as
            :func:`hybridzoo.build` takes them; ``embed_dim`` (the embedding width) defaults to
            ``hidden_size``.

    Model options (:class:`hybridzoo.ModelOptions`):
        {model_options}

    Raises:
        HybridZooError: (subclasses) for an unknown layer, a bad pattern or bad options.
    """
    from hybridzoo.errors import OptionError
    from hybridzoo.lm.model import HybridLM

    if isinstance(pattern, LMConfig):
        given = sorted(options) + [
            name
            for name, value in (("vocab_size", vocab_size), ("max_positions", max_positions))
            if value is not None
        ]
        if given:
            raise OptionError(
                f"build_lm(config) takes no other arguments, got {', '.join(given)}; use "
                "build_lm(config.replace(...)) to change a config"
            )
        return HybridLM(pattern, registry=registry)
    lm = {"tie_embeddings": tie_embeddings, "max_positions": max_positions}
    return HybridLM(_config(pattern, vocab_size, registry, lm | options), registry=registry)


def _config(
    pattern: PatternLike,
    vocab_size: int | None,
    registry: Registry | None,
    options: dict[str, Any],
) -> LMConfig:
    if vocab_size is None:
        from hybridzoo.errors import OptionError

        raise OptionError("a language model needs vocab_size, the number of token ids")
    return LMConfig.create(pattern, vocab_size=vocab_size, registry=registry, **options)


@with_model_options
def lm_param_count(
    pattern: PatternLike | LMConfig,
    *,
    vocab_size: int | None = None,
    tie_embeddings: bool = True,
    max_positions: int | None = None,
    registry: Registry | None = None,
    **options: Any,
) -> int:
    """The exact number of parameters of ``build_lm(pattern, vocab_size=..., **options)``,
    without building it: the backbone's :func:`hybridzoo.param_count`, the embedding, and the
    head unless tied (a tied matrix is counted once) and the learned positions."""
    if isinstance(pattern, LMConfig):
        return pattern.param_count(registry=registry)
    lm = {"tie_embeddings": tie_embeddings, "max_positions": max_positions}
    config = _config(pattern, vocab_size, registry, lm | options)
    return config.param_count(registry=registry)


build_lm.__doc__ = (build_lm.__doc__ or "").replace(
    "{model_options}", describe_model_options(indent=" " * 8).lstrip()
)

"""``build_lm`` and ``lm_param_count``: from a pattern and options to a :class:`HybridLM`."""

from __future__ import annotations

import inspect
from typing import TYPE_CHECKING, Any

import attrs

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
    from hybridzoo.lm.model import HybridLM

    lm = {
        "vocab_size": vocab_size,
        "tie_embeddings": tie_embeddings,
        "max_positions": max_positions,
    }
    return HybridLM(_config(pattern, registry, {**options, **lm}, "build_lm"), registry=registry)


_LM_FIELDS = {
    f.name: None if f.default is attrs.NOTHING else f.default
    for f in attrs.fields(LMConfig)
    if f.name != "backbone"
}
"""The language model's own arguments of :func:`build_lm` (:class:`LMConfig`'s fields but the
backbone), and their values when not given."""


def _config(
    pattern: PatternLike | LMConfig,
    registry: Registry | None,
    options: dict[str, Any],
    what: str,
) -> LMConfig:
    """The :class:`LMConfig` of a :func:`build_lm` call."""
    from hybridzoo.errors import OptionError

    lm = {name: options.pop(name, default) for name, default in _LM_FIELDS.items()}
    if isinstance(pattern, LMConfig):
        given = sorted(options) + [k for k, v in lm.items() if v != _LM_FIELDS[k]]
        if given:
            raise OptionError(
                f"{what}(config) takes no other arguments, got {', '.join(given)}; use "
                f"{what}(config.replace(...)) to change a config"
            )
        return pattern
    if lm["vocab_size"] is None:
        raise OptionError("a language model needs vocab_size, the number of token ids")
    return LMConfig.create(pattern, registry=registry, **lm, **options)


@with_model_options
def lm_param_count(
    pattern: PatternLike | LMConfig, *, registry: Registry | None = None, **options: Any
) -> int:
    """The exact number of parameters of ``build_lm(pattern, **options)`` (the same arguments),
    without building it: the backbone's :func:`hybridzoo.param_count`, the embedding, the
    learned positions with ``max_positions``, and the head unless tied (a tied matrix is counted
    once)."""
    return _config(pattern, registry, dict(options), "lm_param_count").param_count(
        registry=registry
    )


lm_param_count.__signature__ = inspect.signature(build_lm).replace(  # type: ignore[attr-defined]
    return_annotation="int"
)
build_lm.__doc__ = (build_lm.__doc__ or "").replace(
    "{model_options}", describe_model_options(indent=" " * 8).lstrip()
)

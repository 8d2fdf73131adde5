"""Language models: :class:`HybridLM` (embedding, hybrid backbone, head), :func:`build_lm`,
generation (:mod:`hybridzoo.lm.generation`) and checkpoints from transformers
(:mod:`hybridzoo.lm.convert`).

Importing this package does not import torch; the model class is loaded on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from hybridzoo.lm.builder import build_lm, lm_param_count
from hybridzoo.lm.config import LMConfig

if TYPE_CHECKING:  # pragma: no cover
    from hybridzoo.lm.model import HybridLM

__all__ = [
    "HybridLM",
    "LMConfig",
    "build_lm",
    "from_transformers",
    "lm_param_count",
    "to_transformers",
]


def from_transformers(model: Any) -> HybridLM:
    """A :class:`HybridLM` with the weights of a transformers causal LM (see
    :func:`hybridzoo.lm.convert.from_transformers`)."""
    from hybridzoo.lm.convert import from_transformers as convert

    return convert(model)


def to_transformers(lm: HybridLM, model_type: str | None = None) -> Any:
    """The transformers model of ``lm`` (see :func:`hybridzoo.lm.convert.to_transformers`)."""
    from hybridzoo.lm.convert import to_transformers as convert

    return convert(lm, model_type)


def __getattr__(name: str) -> Any:
    if name == "HybridLM":
        from hybridzoo.lm.model import HybridLM

        return HybridLM
    raise AttributeError(f"module 'hybridzoo.lm' has no attribute {name!r}")

"""Language models: :class:`HybridLM` (embedding, hybrid backbone, head), :func:`build_lm`,
generation (:mod:`hybridzoo.lm.generation`) and checkpoints from transformers
(:mod:`hybridzoo.lm.convert`).

Importing this package does not import torch; the model class is loaded on first use.
"""

from __future__ import annotations

from typing import Any

from hybridzoo.lm.builder import build_lm, lm_param_count
from hybridzoo.lm.config import LMConfig

__all__ = ["HybridLM", "LMConfig", "build_lm", "lm_param_count"]


def __getattr__(name: str) -> Any:
    if name == "HybridLM":
        from hybridzoo.lm.model import HybridLM

        return HybridLM
    raise AttributeError(f"module 'hybridzoo.lm' has no attribute {name!r}")

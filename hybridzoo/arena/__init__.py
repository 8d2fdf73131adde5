"""The arena: train and compare layer patterns on synthetic recall tasks (``hybridzoo arena``).

Importing this package is cheap (no torch); the names below load their modules when first used.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "MQAR": "tasks",
    "SelectiveCopying": "tasks",
    "TASKS": "tasks",
    "make_task": "tasks",
    "register_task": "tasks",
    "split_seed": "tasks",
    "LanguageModel": "lm",
    "build_language_model": "lm",
    "language_model_param_count": "lm",
    "RunSpec": "train",
    "TrainSettings": "train",
    "train_run": "train",
    "ArenaConfig": "runner",
    "plan_runs": "runner",
    "run_arena": "runner",
    "format_leaderboard": "report",
    "plot_results": "plot",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        module = importlib.import_module(f"hybridzoo.arena.{_EXPORTS[name]}")
        return getattr(module, name)
    raise AttributeError(f"module 'hybridzoo.arena' has no attribute {name!r}")

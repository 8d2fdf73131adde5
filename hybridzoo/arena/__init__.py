"""The arena: train and compare layer patterns on synthetic recall tasks (``hybridzoo arena``).

Importing this package is cheap (no torch); the names below load their modules when first used.
"""

from __future__ import annotations

import contextlib
import importlib
from typing import Any

_EXPORTS = {
    "Batch": "tasks",
    "IGNORE_INDEX": "tasks",
    "TASKS": "tasks",
    "make_task": "tasks",
    "param": "tasks",
    "register_task": "tasks",
    "split_seed": "tasks",
    "task_class": "tasks",
    "ArenaModel": "presets",
    "Preset": "presets",
    "Reference": "presets",
    "Stage": "presets",
    "get_preset": "presets",
    "get_arena_registry": "plugins",
    "LanguageModel": "lm",
    "build_language_model": "lm",
    "language_model_param_count": "lm",
    "RunSpec": "spec",
    "TrainSettings": "spec",
    "train_run": "train",
    "ArenaConfig": "plan",
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
    if name[:1].isupper():  # task classes that moved to plugins: deprecated aliases
        with contextlib.suppress(AttributeError):
            return getattr(importlib.import_module("hybridzoo.arena.tasks"), name)
    raise AttributeError(f"module 'hybridzoo.arena' has no attribute {name!r}")

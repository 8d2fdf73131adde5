"""The builtin arena plugin (entry-point group ``hybridzoo.tasks``): its tasks and presets.

Tasks: ``mqar`` (Zoology), ``selective_copying`` (Mamba), and three of MAD's:
``noisy_recall``, ``fuzzy_recall``, ``compression``. Presets: ``default``, ``quick``, ``paper``.
"""

from __future__ import annotations

from typing import Any

from hybridzoo import hookimpl


@hookimpl
def hybridzoo_arena_tasks() -> list[type]:
    from hybridzoo_plugins.arena.copying import SelectiveCopying
    from hybridzoo_plugins.arena.mad import Compression, FuzzyRecall, NoisyRecall
    from hybridzoo_plugins.arena.mqar import MQAR

    return [MQAR, SelectiveCopying, NoisyRecall, FuzzyRecall, Compression]


@hookimpl
def hybridzoo_arena_presets() -> list[Any]:
    from hybridzoo_plugins.arena.presets import PRESETS

    return list(PRESETS)

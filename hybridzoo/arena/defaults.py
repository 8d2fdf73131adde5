"""The arena's defaults, torch-free so that building the command line stays cheap."""

from __future__ import annotations

DEFAULT_PATTERNS: tuple[str, ...] = ("AA", "MM", "GG", "MA", "MG")
"""Pure attention, pure Mamba, pure GLA, and two hybrids (Mamba→attention, Mamba→GLA)."""

DEFAULT_HIDDEN_SIZE = 64
"""Width of the first pattern, which sets the default budget."""

BUILTIN_TASKS: tuple[str, ...] = ("mqar", "selective_copying")
"""Names of the tasks that ship with hybridzoo (see :mod:`hybridzoo.arena.tasks`)."""

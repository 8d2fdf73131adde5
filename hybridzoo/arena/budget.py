"""Matched parameter budgets: the width at which each model has the budget's parameters.

Counting uses the plugins' formulas through ``hybridzoo.param_count`` (nothing is built), and
every layer sizes its own options to a width through its spec's ``scale_options`` (heads split
the width, a window covers the sequence), so a third-party layer is matched as fairly
as a builtin. This module is the seam where ``hybridzoo.match_budget`` will take over.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import hybridzoo
from hybridzoo.arena.lm import language_model_param_count
from hybridzoo.counting import scale_layer_options
from hybridzoo.errors import ConfigError

__all__ = ["match_hidden_size", "scaled_layer_options"]


def scaled_layer_options(
    pattern: str | Sequence[str],
    hidden_size: int,
    seq_len: int,
    user_options: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Layer options sized to ``hidden_size`` for every layer of ``pattern``, builtin or not:
    each layer's ``scale_options`` (see :func:`hybridzoo.counting.scale_layer_options`), with
    ``user_options`` winning; options of layers absent from ``pattern`` are left out."""
    return scale_layer_options(pattern, hidden_size, seq_len=seq_len, user_options=user_options)


def match_hidden_size(
    pattern: str | Sequence[str],
    *,
    budget: int,
    vocab_size: int,
    seq_len: int,
    user_options: Mapping[str, Any] | None = None,
    multiple: int = 4,
    max_hidden_size: int = 4096,
    embed_dim: int | None = None,
    tie: bool = True,
    lm_options: Mapping[str, Any] | None = None,
) -> tuple[int, int]:
    """The width whose language model's parameter count is closest to ``budget``.

    Tries ``hidden_size = multiple, 2·multiple, ...`` with :func:`scaled_layer_options`, counting
    with ``hybridzoo.param_count`` (nothing is built); widths the layers reject are skipped.
    ``lm_options`` are the language model's (learned positions count too). Returns
    ``(hidden_size, param_count)``; a budget that no width reaches is a
    :class:`~hybridzoo.ConfigError`.
    """
    best: tuple[int, int] | None = None
    errors: list[str] = []
    for hidden in range(multiple, max_hidden_size + 1, multiple):
        try:
            options = scaled_layer_options(pattern, hidden, seq_len, user_options)
            count = language_model_param_count(
                pattern,
                vocab_size=vocab_size,
                hidden_size=hidden,
                embed_dim=embed_dim,
                tie=tie,
                **options,
                **dict(lm_options or {}),
            )
        except (ValueError, TypeError, hybridzoo.HybridZooError) as exc:
            errors.append(f"hidden_size={hidden}: {exc}")
            continue
        if best is None or abs(count - budget) < abs(best[1] - budget):
            best = (hidden, count)
        if count > budget:
            break
    if best is None:
        raise ConfigError(
            f"no hidden size up to {max_hidden_size} is valid for pattern {pattern!r}: "
            + (errors[-1] if errors else "no candidates")
        )
    return best

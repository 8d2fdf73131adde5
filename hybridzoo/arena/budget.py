"""Matched parameter budgets: the width at which each model has the budget's parameters.

Counting uses the plugins' formulas through ``hybridzoo.param_count`` (nothing is built), and
every layer sizes its own options to a width through its spec's ``scale_options`` (heads split
the width, a window covers the sequence), so a third-party layer is matched as fairly
as a builtin. :func:`hybridzoo.match_budget` does the matching.
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

    :func:`hybridzoo.match_budget` over ``hidden_size = multiple, 2·multiple, ...`` with the
    layers' scaled options (nothing is built; widths the layers reject are skipped), the budget
    counting the language model's embedding and head.
    ``lm_options`` are the language model's (learned positions count too). Returns
    ``(hidden_size, param_count)``; a budget that no width reaches is a
    :class:`~hybridzoo.ConfigError`.
    """
    lm = dict(lm_options or {})
    user = dict(user_options or {})
    if embed_dim is not None:
        user["embed_dim"] = embed_dim

    def around(hidden: int, options: dict[str, Any]) -> tuple[int, float]:
        """The language model's parameters beyond the backbone's (embedding, head, positions)."""
        options.pop("hidden_size")
        body = hybridzoo.param_count(pattern, hidden_size=hidden, **options)
        total = language_model_param_count(
            pattern, vocab_size=vocab_size, hidden_size=hidden, tie=tie, **options, **lm
        )
        return total - body, 0.0

    try:
        match = hybridzoo.match_budget(
            pattern,
            params=budget,
            seq_len=seq_len,
            multiple=multiple,
            max_hidden_size=max_hidden_size,
            extra=around,
            **user,
        )
    except hybridzoo.OptionError as exc:
        raise ConfigError(f"pattern {pattern!r}: {exc}") from exc
    return match.hidden_size, int(match.achieved)

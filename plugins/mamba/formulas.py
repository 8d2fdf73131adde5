"""Closed formulas for the Mamba-1 mixer: sizes, parameter count, step-state size (no torch)."""

from __future__ import annotations

import math
from typing import Any

__all__ = [
    "check_positive_int",
    "intermediate_size",
    "param_count",
    "resolve_dt_rank",
    "state_size",
]


def check_positive_int(name: str, value: Any) -> int:
    """``value`` if it is an integer >= 1, else a TypeError/ValueError naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an integer >= 1, got {value!r}")
    if value < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    return value


def resolve_dt_rank(hidden_size: int, dt_rank: int | str = "auto") -> int:
    """Rank of the time-step projection: ``ceil(hidden_size / 16)`` for ``"auto"``, else itself."""
    check_positive_int("hidden_size", hidden_size)
    if dt_rank == "auto":
        return math.ceil(hidden_size / 16)
    if isinstance(dt_rank, str):
        raise ValueError(f"dt_rank must be 'auto' or an integer >= 1, got {dt_rank!r}")
    return check_positive_int("dt_rank", dt_rank)


def intermediate_size(hidden_size: int, expand_factor: int | float = 2) -> int:
    """Inner width ``I = expand_factor · hidden_size``; it must be a whole number >= 1."""
    check_positive_int("hidden_size", hidden_size)
    if isinstance(expand_factor, bool) or not isinstance(expand_factor, int | float):
        raise TypeError(f"expand_factor must be a number > 0, got {expand_factor!r}")
    inner = expand_factor * hidden_size
    rounded = round(inner)
    if not expand_factor > 0 or rounded < 1 or abs(inner - rounded) > 1e-6:
        raise ValueError(
            "expand_factor · hidden_size must be a whole number >= 1, got "
            f"{expand_factor!r} · {hidden_size} = {inner!r}"
        )
    return int(rounded)


def param_count(
    hidden_size: int,
    *,
    state_size: int = 16,
    expand_factor: int | float = 2,
    conv_size: int = 4,
    dt_rank: int | str = "auto",
    conv_bias: bool = True,
    bias: bool = False,
) -> int:
    """Exact parameter count of one :class:`~hybridzoo_plugins.mamba.layer.MambaMixer`.

    With ``H = hidden_size``, ``I = expand_factor·H``, ``N = state_size``, ``K = conv_size`` and
    ``R = dt_rank``:

    - ``in_proj``  ``H → 2I``: ``2IH`` (+ ``2I`` if ``bias``)
    - ``conv1d``   depthwise, kernel K: ``IK`` (+ ``I`` if ``conv_bias``)
    - ``x_proj``   ``I → R + 2N``, no bias: ``I(R + 2N)``
    - ``dt_proj``  ``R → I`` with bias: ``RI + I``
    - ``A_log`` ``IN``, ``D`` ``I``
    - ``out_proj`` ``I → H``: ``IH`` (+ ``H`` if ``bias``)
    """
    inner = intermediate_size(hidden_size, expand_factor)
    n = check_positive_int("state_size", state_size)
    k = check_positive_int("conv_size", conv_size)
    rank = resolve_dt_rank(hidden_size, dt_rank)
    count = 2 * inner * hidden_size  # in_proj
    count += inner * k + (inner if conv_bias else 0)  # conv1d
    count += inner * (rank + 2 * n)  # x_proj
    count += rank * inner + inner  # dt_proj
    count += inner * n + inner  # A_log, D
    count += inner * hidden_size  # out_proj
    if bias:
        count += 2 * inner + hidden_size
    return count


def state_size(
    hidden_size: int,
    *,
    state_size: int = 16,
    expand_factor: int | float = 2,
    conv_size: int = 4,
    **_: Any,
) -> int:
    """Elements of step-mode state per sequence: conv window ``I(K-1)`` plus SSM state ``IN``.

    Other keywords of the mixer (``dt_rank``, ``bias``, ...) are accepted and ignored.
    """
    inner = intermediate_size(hidden_size, expand_factor)
    n = check_positive_int("state_size", state_size)
    k = check_positive_int("conv_size", conv_size)
    return inner * (k - 1) + inner * n

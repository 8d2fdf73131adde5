"""Deprecated: the scalar-decay recurrence is :func:`hybridzoo.ops.chunk_gla` with a
``[B, T, H]`` log decay (and :func:`hybridzoo.ops.gla_step` with ``[B, H]``); the old names
``chunk_simple_gla`` and ``simple_gla_step`` resolve to them with a ``DeprecationWarning``."""

from typing import Any


def __getattr__(name: str) -> Any:
    from hybridzoo.ops import _renamed

    return _renamed(__name__, name)

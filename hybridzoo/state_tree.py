"""Operations on a body's step state: a tuple of batch-first tensors (nested tuples and lists
allowed, ``None`` kept as it is), as every stateful body returns from ``init_state``.

The core clones, selects rows of, concatenates and moves states through these functions alone,
without knowing the layer (the plugin API's state convention: dim 0 of every tensor is the
batch, and rows share nothing). A tensor whose size may differ between two states of one body
(a full-attention cache that has grown to another capacity) is concatenated after zero padding
at the end of each other dimension, up to the largest size: a body whose state grows documents
that zeros there are unused slots.

Each function raises :class:`~hybridzoo.StateError` for something that is not such a state.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch.nn import functional as F

from hybridzoo.errors import StateError

__all__ = [
    "cat_trees",
    "clone_tree",
    "restore_tree",
    "select_tree",
    "to_tree",
    "tree_tensors",
]


def _kind(value: Any) -> str:
    return f"{type(value).__module__}.{type(value).__qualname__}".removeprefix("builtins.")


def tree_tensors(tree: Any) -> list[torch.Tensor]:
    """The tensors of a state, depth first."""
    if isinstance(tree, torch.Tensor):
        return [tree]
    if isinstance(tree, tuple | list):
        return [t for item in tree for t in tree_tensors(item)]
    if tree is None:
        return []
    raise StateError(f"a step state holds tensors in tuples or lists, found a {_kind(tree)}")


def _map(fn: Callable[[list[torch.Tensor]], torch.Tensor], trees: Sequence[Any]) -> Any:
    """Apply ``fn`` to the tensors at each place of several states of one structure."""
    first = trees[0]
    if isinstance(first, torch.Tensor):
        if not all(isinstance(t, torch.Tensor) for t in trees):
            raise StateError("the states differ in structure (a tensor in one, not in another)")
        return fn(list(trees))
    if isinstance(first, tuple | list):
        if not all(type(t) is type(first) and len(t) == len(first) for t in trees):
            lengths = sorted({len(t) if isinstance(t, tuple | list) else -1 for t in trees})
            raise StateError(f"the states differ in structure (sequences of lengths {lengths})")
        items = [_map(fn, [t[i] for t in trees]) for i in range(len(first))]
        return type(first)(items)
    if first is None:
        if any(t is not None for t in trees):
            raise StateError("the states differ in structure (None in one, not in another)")
        return None
    raise StateError(f"a step state holds tensors in tuples or lists, found a {_kind(first)}")


def _batch_first(t: torch.Tensor, batch: int | None) -> None:
    if t.dim() == 0 or (batch is not None and t.shape[0] != batch):
        raise StateError(
            f"a state tensor of shape {list(t.shape)} is not batch-first (dim 0 must be the "
            f"batch of {batch if batch is not None else 'the state'}): a layer keeps per-row "
            "state, e.g. a position counter [B] rather than a 0-dim one"
        )


def clone_tree(tree: Any) -> Any:
    """A deep copy: no tensor shared with ``tree``."""
    return _map(lambda ts: ts[0].clone(), [tree])


def select_tree(tree: Any, index: torch.Tensor, batch: int | None = None) -> Any:
    """The rows ``index`` (a 1-D int64 tensor, repeats allowed) of every tensor, as copies;
    ``batch``, when given, is checked against dim 0 of each tensor."""

    def pick(ts: list[torch.Tensor]) -> torch.Tensor:
        _batch_first(ts[0], batch)
        return ts[0].index_select(0, index.to(ts[0].device))

    return _map(pick, [tree])


def _padded(t: torch.Tensor, shape: Sequence[int]) -> torch.Tensor:
    pad: list[int] = []
    for have, want in zip(reversed(t.shape[1:]), reversed(shape[1:]), strict=True):
        pad.extend((0, want - have))
    return F.pad(t, pad) if any(pad) else t


def cat_trees(trees: Sequence[Any], batches: Sequence[int] | None = None) -> Any:
    """The states one after the other along the batch; the other dimensions are zero-padded
    at the end up to the largest size (a grown cache). ``batches``: each state's batch size,
    checked against dim 0 of its tensors."""

    def cat(ts: list[torch.Tensor]) -> torch.Tensor:
        for i, t in enumerate(ts):
            _batch_first(t, None if batches is None else batches[i])
        if len({t.dim() for t in ts}) > 1:
            raise StateError(
                f"state tensors of shapes {[list(t.shape) for t in ts]} cannot be concatenated"
            )
        if len({(t.dtype, t.device) for t in ts}) > 1:
            found = sorted({f"{t.dtype} on {t.device}" for t in ts})
            raise StateError(
                f"the states are of different dtypes or devices ({', '.join(found)}): move them "
                "to one with state.to(device=..., dtype=...) first"
            )
        shape = [max(t.shape[d] for t in ts) for d in range(ts[0].dim())]
        return torch.cat([_padded(t, shape) for t in ts], dim=0)

    return _map(cat, list(trees))


def to_tree(tree: Any, device: Any = None, dtype: torch.dtype | None = None) -> Any:
    """Every tensor on ``device``; floating-point ones in ``dtype`` (integer counters keep
    theirs). As ``Tensor.to``, a tensor already there is returned as it is (not copied)."""

    def move(ts: list[torch.Tensor]) -> torch.Tensor:
        t = ts[0]
        return t.to(
            device=device, dtype=dtype if dtype is not None and t.is_floating_point() else None
        )

    return _map(move, [tree])


def restore_tree(current: Any, saved: Any) -> Any:
    """``current`` set to the values of ``saved`` (which is left unchanged): copied in place
    where shapes, dtypes and devices agree, a copy of ``saved``'s tensor where they do not (a
    cache that grew since). Returns the restored state (the same tensors where copied)."""

    def put(ts: list[torch.Tensor]) -> torch.Tensor:
        now, then = ts
        if now.shape == then.shape and now.dtype == then.dtype and now.device == then.device:
            return now.copy_(then)
        return then.clone()

    return _map(put, [current, saved])

"""Arena checkpoints: written atomically, read with ``weights_only=True``, matched by run key.

A checkpoint holds the model, the optimizer, the schedule, the RNG state, the history and, once
the run is finished, its result; a resumed run continues exactly as an uninterrupted one would.
The file is named by the run's canonical key (:func:`~hybridzoo.arena.spec.run_name`), so two
patterns that expand alike share a checkpoint *and* can resume it, and two different runs never
share one.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from hybridzoo.errors import CheckpointError

__all__ = ["CHECKPOINT_FORMAT", "check_resumable", "load_checkpoint", "save_atomic"]

CHECKPOINT_FORMAT = 2
"""Format 2: the run is identified by its canonical key (format 1 compared pattern strings)."""

CHECKPOINT_KEYS = (
    "format",
    "key",
    "settings",
    "model",
    "optimizer",
    "scheduler",
    "rng",
    "step",
    "history",
    "train_seconds",
    "cpu_seconds",
    "solved_step",
    "result",
)
_FIX = "delete it, or start without --resume / with another --out folder"


def save_atomic(payload: dict[str, Any], path: Path) -> None:
    """``torch.save`` to a temporary file, then rename: a crash never leaves half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    torch.save(payload, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read an arena checkpoint written by :func:`~hybridzoo.arena.train.train_run`, safely.

    The file is unpickled with ``weights_only=True``: only tensors, containers and plain values
    load, so a crafted file cannot run code. A truncated, foreign or hostile file raises
    :class:`~hybridzoo.CheckpointError` naming the file (never the unpickler's traceback).
    """
    path = Path(path)
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # UnpicklingError, RuntimeError (truncated zip), EOFError, ...
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(
            f"{path} is not a readable arena checkpoint ({type(exc).__name__}: {reason[:200]}); "
            + _FIX
        ) from None
    if not isinstance(checkpoint, dict) or checkpoint.get("format") != CHECKPOINT_FORMAT:
        found = checkpoint.get("format") if isinstance(checkpoint, dict) else type(checkpoint)
        raise CheckpointError(
            f"{path} is not an arena checkpoint of format {CHECKPOINT_FORMAT} (found {found!r}); "
            + _FIX
        )
    missing = sorted(set(CHECKPOINT_KEYS) - set(checkpoint))
    if missing:
        raise CheckpointError(f"{path} is an incomplete arena checkpoint: no {', '.join(missing)}")
    return checkpoint


def check_resumable(
    checkpoint: dict[str, Any], path: Path, key: dict[str, Any], settings: dict[str, Any]
) -> None:
    """Refuse a checkpoint written by another run (a :class:`~hybridzoo.CheckpointError`
    naming what differs)."""
    diffs = [
        f"{name} {k}: checkpoint {theirs.get(k)!r}, now {ours.get(k)!r}"
        for name, theirs, ours in (
            ("run", checkpoint["key"], key),
            ("setting", checkpoint["settings"], settings),
        )
        for k in sorted(set(theirs) | set(ours))
        if theirs.get(k) != ours.get(k)
    ]
    if diffs:
        raise CheckpointError(
            f"{path} was written by a run with other settings ({'; '.join(diffs)[:600]}); "
            "start without --resume or use another --out folder"
        )

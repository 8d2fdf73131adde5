"""The arena's leaderboard: a plain-text table per sequence length, best pattern first."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

COLUMNS: tuple[tuple[str, str], ...] = (
    ("#", ">"),
    ("pattern", "<"),
    ("hidden", ">"),
    ("params", ">"),
    ("state/seq", ">"),
    ("accuracy", ">"),
    ("loss", ">"),
    ("steps", ">"),
    ("solved@", ">"),
    ("train s", ">"),
    ("tokens/s", ">"),
    ("step ms/tok", ">"),
)


def _fmt(value: Any, spec: str) -> str:
    if value is None:
        return "-"
    if isinstance(value, float) and value != value:  # NaN
        return "nan"
    return format(value, spec)


def rank_runs(runs: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """Runs sorted best first: higher accuracy, then lower loss, then fewer parameters."""

    def key(run: Mapping[str, Any]) -> tuple[float, float, int]:
        acc = run.get("accuracy")
        loss = run.get("loss")
        acc = -1.0 if acc is None or acc != acc else acc
        loss = float("inf") if loss is None or loss != loss else loss
        return (-acc, loss, int(run.get("params") or 0))

    return sorted(runs, key=key)


def _describe_task(run: Mapping[str, Any]) -> str:
    params = dict(run.get("task_params") or {})
    params.pop("seq_len", None)
    inner = ", ".join(f"{k}={v}" for k, v in params.items())
    return f"{run.get('task')} L={run.get('seq_len')}" + (f" ({inner})" if inner else "")


def leaderboard_rows(runs: Sequence[Mapping[str, Any]]) -> list[list[str]]:
    """The table cells of ``runs`` (ranked), as strings, one row per run."""
    rows = []
    for i, run in enumerate(rank_runs(runs), start=1):
        rows.append(
            [
                str(i),
                str(run.get("pattern")),
                _fmt(run.get("hidden_size"), "d"),
                _fmt(run.get("params"), ",d"),
                _fmt(run.get("state_size"), ",d"),
                _fmt(run.get("accuracy"), ".3f"),
                _fmt(run.get("loss"), ".3f"),
                _fmt(run.get("steps"), "d"),
                _fmt(run.get("solved_step"), "d"),
                _fmt(run.get("train_seconds"), ".1f"),
                _fmt(run.get("tokens_per_second"), ",.0f"),
                _fmt(run.get("step_latency_ms"), ".3f"),
            ]
        )
    return rows


def format_table(rows: Sequence[Sequence[str]]) -> str:
    """Align ``rows`` under :data:`COLUMNS`."""
    headers = [name for name, _ in COLUMNS]
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    lines = ["  ".join(f"{h:{a}{w}}" for (h, a), w in zip(COLUMNS, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    for row in rows:
        cells = zip(row, COLUMNS, widths, strict=True)
        lines.append("  ".join(f"{cell:{a}{w}}" for cell, (_, a), w in cells))
    return "\n".join(lines)


def format_leaderboard(payload: Mapping[str, Any]) -> str:
    """The leaderboard text of an arena results payload (see :func:`run_arena`)."""
    runs = list(payload.get("runs") or [])
    settings = payload.get("settings") or {}
    head = (
        f"hybridzoo arena · budget {payload.get('budget', 0):,} parameters · "
        f"seed {settings.get('seed')} · {payload.get('device')} × {payload.get('world_size', 1)}"
        f" · target accuracy {settings.get('target_accuracy')}"
    )
    parts = [head]
    by_length: dict[Any, list[Mapping[str, Any]]] = {}
    for run in runs:
        by_length.setdefault(run.get("seq_len"), []).append(run)
    for _, group in sorted(by_length.items(), key=lambda kv: (kv[0] is None, kv[0] or 0)):
        parts.append("")
        parts.append(_describe_task(group[0]))
        parts.append(format_table(leaderboard_rows(group)))
    if "total_seconds" in payload:
        parts.append("")
        parts.append(f"total time {payload['total_seconds']:.0f} s")
    parts.append(
        "state/seq: recurrent-state elements per sequence in step mode (attention: its KV cache)"
    )
    return "\n".join(parts)

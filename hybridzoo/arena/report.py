"""The arena's leaderboard: one block per sequence length, honest about chance and budget.

Rows are models (and widths, when the arena sweeps widths). A row gathers the model's runs at
one learning rate (its chosen one when a stage picked it, else the best of that row's) over the
seeds: the median accuracy with its min–max, how many seeds reached the target ("solved k/n"),
the median steps. Every block prints the task's chance level; a row whose median accuracy is
within ``chance_margin`` of chance is marked *not learned within budget* and listed after the
ranked rows, unranked. The header states the learning rates, the sequences each run saw and how
that compares with the reference protocol.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["COLUMNS", "NOT_LEARNED", "format_leaderboard", "leaderboard_rows", "summarize"]

NOT_LEARNED = "not learned within budget"

COLUMNS: tuple[tuple[str, str], ...] = (
    ("#", ">"),
    ("model", "<"),
    ("pattern", "<"),
    ("hidden", ">"),
    ("params", ">"),
    ("FLOPs/tok", ">"),
    ("state/seq", ">"),
    ("lr", ">"),
    ("accuracy", ">"),
    ("solved", ">"),
    ("steps", ">"),
    ("loss", ">"),
    ("train s", ">"),
    ("tokens/s", ">"),
    ("step ms/tok", ">"),
    ("note", "<"),
)

Run = Mapping[str, Any]


def _fmt(value: Any, spec: str) -> str:
    if value is None:
        return "-"
    if isinstance(value, float) and value != value:  # NaN
        return "nan"
    return format(value, spec)


def _median(values: Sequence[Any]) -> float | None:
    clean = [float(v) for v in values if isinstance(v, int | float) and v == v]
    return statistics.median(clean) if clean else None


def _accuracy(run: Run) -> float:
    value = run.get("accuracy")
    return -1.0 if not isinstance(value, int | float) or value != value else float(value)


def summarize(
    runs: Sequence[Run], chosen: Mapping[str, float], margin: float
) -> list[dict[str, Any]]:
    """One summary per (model, width) of ``runs`` (one sequence length), ranked best first."""
    groups: dict[tuple[str, int], list[Run]] = {}
    for run in runs:
        groups.setdefault(
            (run.get("model") or run.get("pattern"), run.get("hidden_size")), []
        ).append(run)
    rows = []
    for (model, hidden), group in groups.items():
        by_lr: dict[float, list[Run]] = {}
        for run in group:
            by_lr.setdefault(run.get("lr"), []).append(run)
        lr = chosen.get(model)
        if lr not in by_lr:  # no stage chose it: the best of this row's (Zoology's best of k)
            lr = max(
                by_lr, key=lambda x: (_median([_accuracy(r) for r in by_lr[x]]), len(by_lr[x]))
            )
        picked = by_lr[lr]
        accuracies = [_accuracy(r) for r in picked]
        median = _median(accuracies)
        chance = picked[0].get("chance")
        diverged = sum(bool(r.get("diverged")) for r in picked)
        learned = median is not None and (chance is None or median > chance + margin)
        learned = learned and diverged < len(picked)
        rows.append(
            {
                "model": model,
                "pattern": picked[0].get("pattern"),
                "hidden": hidden,
                "params": picked[0].get("params"),
                "flops": picked[0].get("flops_per_token"),
                "state": picked[0].get("state_size"),
                "lr": lr,
                "lrs": {x: _median([_accuracy(r) for r in rs]) for x, rs in sorted(by_lr.items())},
                "accuracy": median,
                "low": min(accuracies),
                "high": max(accuracies),
                "seeds": len(picked),
                "solved": sum(bool(r.get("solved")) for r in picked),
                "diverged": diverged,
                "steps": _median([r.get("steps") for r in picked]),
                "loss": _median([r.get("loss") for r in picked]),
                "train_seconds": _median([r.get("train_seconds") for r in picked]),
                "tokens_per_second": _median([r.get("tokens_per_second") for r in picked]),
                "latency": _median([r.get("step_latency_ms") for r in picked]),
                "learned": learned,
            }
        )
    rows.sort(
        key=lambda r: (not r["learned"], -(r["accuracy"] or -1), -r["solved"], r["loss"] or 1e9)
    )
    return rows


def leaderboard_rows(summaries: Sequence[Mapping[str, Any]]) -> list[list[str]]:
    """The table cells of ranked summaries (see :func:`summarize`), one row each."""
    cells, rank = [], 0
    for row in summaries:
        rank += row["learned"]
        accuracy = _fmt(row["accuracy"], ".3f")
        if row["seeds"] > 1:
            accuracy += f" [{row['low']:.3f}-{row['high']:.3f}]"
        note = "" if row["learned"] else NOT_LEARNED
        if row["diverged"]:
            note = f"{row['diverged']} diverged" + (f"; {note}" if note else "")
        state = row["state"]
        cells.append(
            [
                str(rank) if row["learned"] else "-",
                str(row["model"]),
                str(row["pattern"]),
                _fmt(row["hidden"], "d"),
                _fmt(row["params"], ",d"),
                _fmt(row.get("flops"), ",.0f"),
                "grows" if state is None else _fmt(state, ",d"),
                _fmt(row["lr"], ".3g"),
                accuracy,
                f"{row['solved']}/{row['seeds']}",
                _fmt(row["steps"], ".0f"),
                _fmt(row["loss"], ".3f"),
                _fmt(row["train_seconds"], ".1f"),
                _fmt(row["tokens_per_second"], ",.0f"),
                _fmt(row["latency"], ".3f"),
                note,
            ]
        )
    return cells


def format_table(
    rows: Sequence[Sequence[str]], columns: Sequence[tuple[str, str]] = COLUMNS
) -> str:
    """Align ``rows`` under ``columns`` (``(title, alignment)`` pairs)."""
    headers = [name for name, _ in columns]
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    lines = ["  ".join(f"{h:{a}{w}}" for (h, a), w in zip(columns, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    for row in rows:
        cells = zip(row, columns, widths, strict=True)
        lines.append("  ".join(f"{cell:{a}{w}}" for cell, (_, a), w in cells))
    return "\n".join(line.rstrip() for line in lines)


def _sweep(summaries: Sequence[Mapping[str, Any]], seq_len: Any) -> list[str]:
    lrs = sorted({lr for row in summaries for lr in row["lrs"]})
    if all(len(row["lrs"]) < 2 for row in summaries):
        return []
    columns = [("model", "<"), ("hidden", ">"), *((f"lr {lr:.3g}", ">") for lr in lrs)]
    rows = []
    for row in summaries:
        cells = [str(row["model"]), _fmt(row["hidden"], "d")]
        for lr in lrs:
            mark = "*" if lr == row["lr"] else " "
            cells.append(_fmt(row["lrs"].get(lr), ".3f") + mark if lr in row["lrs"] else "- ")
        rows.append(cells)
    title = f"learning rates at L={seq_len} (held-out accuracy, median over seeds; * = used above)"
    return ["", title, format_table(rows, columns)]


def _header(payload: Mapping[str, Any], runs: Sequence[Run]) -> list[str]:
    settings = payload.get("settings") or {}
    title = payload.get("title") or "custom run"
    size = (
        f"widths {', '.join(map(str, payload['widths']))}"
        if payload.get("widths")
        else f"budget {payload.get('budget') or 0:,} parameters"
    )
    lines = [
        f"hybridzoo arena · {title} · {payload.get('task')} · {size} · {payload.get('device')} "
        f"× {payload.get('world_size', 1)}, {payload.get('jobs', 1)} job(s)"
    ]
    for stage in payload.get("stages") or []:
        lrs = stage.get("lrs")
        lr_text = ", ".join(f"{lr:.3g}" for lr in lrs) if lrs else "each model's best so far"
        lines.append(
            f"stage {stage['name']!r}: L={', '.join(map(str, stage['seq_lens']))}; "
            f"learning rate(s) {lr_text}; seed(s) {', '.join(map(str, stage['seeds']))}"
        )
    seen = [r.get("sequences") for r in runs if r.get("sequences")]
    most = max((r.get("steps", 0) * r.get("batch_size", 0) for r in runs), default=0)
    if seen:
        target = settings.get("target_accuracy")
        stop = f"; a run stops at accuracy {target}" if target else ""
        lines.append(
            f"sequences seen per run: median {_median(seen):,.0f}, max {max(seen):,}{stop}"
        )
    reference = payload.get("reference")
    if reference and seen:
        share = 100.0 * max(max(seen), most) / reference["sequences_per_run"]
        lines.append(
            f"reference: {reference['name']}: {reference['sequences_per_run']:,} sequences per "
            f"run, best of {reference['learning_rates']} learning rates ({reference['note']}); "
            f"a run here saw at most {share:.2g}% of one reference run"
        )
    margin = payload.get("chance_margin", 0.05)
    lines.append(
        f"rows whose median accuracy is within {margin:g} of chance are marked "
        f"{NOT_LEARNED!r} and listed unranked"
    )
    for label, reason in payload.get("unavailable") or []:
        lines.append(f"not run: {label}: {reason}")
    return lines


def format_leaderboard(payload: Mapping[str, Any]) -> str:
    """The leaderboard text of an arena results payload (see :func:`~hybridzoo.arena.run_arena`)."""
    runs = [r for r in payload.get("runs") or [] if r.get("done", True)]
    parts = _header(payload, runs)
    chosen = payload.get("chosen_lrs") or {}
    margin = payload.get("chance_margin", 0.05)
    by_length: dict[Any, list[Run]] = {}
    for run in runs:
        by_length.setdefault(run.get("seq_len"), []).append(run)
    for seq_len, group in sorted(by_length.items(), key=lambda kv: (kv[0] is None, kv[0] or 0)):
        params = dict(group[0].get("task_params") or {})
        params.pop("seq_len", None)
        inner = ", ".join(f"{k}={v}" for k, v in params.items())
        chance = group[0].get("chance")
        parts += [
            "",
            f"{group[0].get('task')} L={seq_len} ({inner}) · chance level {_fmt(chance, '.3f')}",
        ]
        summaries = summarize(group, chosen, margin)
        parts.append(format_table(leaderboard_rows(summaries)))
        parts += _sweep(summaries, seq_len)
    if "total_seconds" in payload:
        parts += ["", f"total time {payload['total_seconds']:.0f} s"]
    parts.append(
        "FLOPs/tok: forward FLOPs per token at the task's length, from the layers' formulas "
        "(hybridzoo.cost, with the head; training costs 3x)"
    )
    parts.append(
        "state/seq: recurrent-state elements per sequence in step mode (a KV cache included; "
        "'grows': a cache that grows with the sequence)"
    )
    return "\n".join(parts)

"""The arena's figure (matplotlib, a dependency of hybridzoo): one row of panels.

- ``"state"``: accuracy against the recurrent state per sequence (log scale), one point per
  model and length, as in the Based paper's Figure 2 (Arora et al., 2024); models whose state
  grows with the sequence (a full KV cache) are left out of this panel and named under it;
- ``"length"``: accuracy against the sequence length, one line per model;
- ``"width"``: accuracy against the model width, one panel per sequence length, as in Zoology's
  Figure 2 (Arora et al., ICLR 2024).

Points are the leaderboard's rows (median over seeds at the row's learning rate); the chance
level of each length is drawn as a dotted line.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from hybridzoo.arena.report import summarize

MISSING_MATPLOTLIB = (
    "the arena plot needs matplotlib, which is not installed: pip install matplotlib "
    "(or run with --no-plot)"
)
MARKERS = "osD^vP*Xh<>"


def _rows(payload: Mapping[str, Any]) -> dict[int, list[dict[str, Any]]]:
    by_length: dict[int, list[Any]] = {}
    for run in payload.get("runs") or []:
        if run.get("done", True) and run.get("seq_len") is not None:
            by_length.setdefault(run["seq_len"], []).append(run)
    chosen = payload.get("chosen_lrs") or {}
    margin = payload.get("chance_margin", 0.05)
    return {L: summarize(runs, chosen, margin) for L, runs in sorted(by_length.items())}


def _chance(payload: Mapping[str, Any]) -> dict[int, float]:
    return {
        r["seq_len"]: r["chance"]
        for r in payload.get("runs") or []
        if r.get("chance") is not None and r.get("seq_len") is not None
    }


def plot_results(payload: Mapping[str, Any], path: str | Path) -> Path:
    """Write the PNG of an arena results payload to ``path``; return the path.

    Raises ``ImportError`` with an installation hint when matplotlib is missing.
    """
    try:
        from matplotlib import colormaps
        from matplotlib.figure import Figure
    except ImportError as exc:
        raise ImportError(MISSING_MATPLOTLIB) from exc

    rows = _rows(payload)
    chance = _chance(payload)
    lengths = list(rows)
    models = list(dict.fromkeys(r["model"] for group in rows.values() for r in group))
    marker = {m: MARKERS[i % len(MARKERS)] for i, m in enumerate(models)}
    cmap = colormaps["viridis"]
    panels: list[tuple[str, int | None]] = []
    for kind in payload.get("figures") or ("state", "length"):
        panels += [("width", L) for L in lengths] if kind == "width" else [(kind, None)]
    fig = Figure(figsize=(4.6 * len(panels), 4.4))  # no pyplot: no global state, no GUI
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for ax, (kind, length) in zip(axes, panels, strict=True):
        if kind == "state":
            _state_panel(ax, rows, lengths, marker, cmap)
        elif kind == "length":
            _length_panel(ax, rows, lengths, models, marker, chance)
        else:
            _width_panel(ax, rows[length], length, models, marker, chance.get(length))
        ax.set_ylim(-0.02, 1.08)
        ax.set_ylabel("held-out accuracy")
        ax.legend(fontsize=7, title="model", title_fontsize=7)
    task = payload.get("task", "")
    title = payload.get("title") or ""
    budget = payload.get("budget")
    size = f"~{budget:,} parameters per model" if budget else "widths as shown"
    fig.suptitle(f"hybridzoo arena: {task}, {size}" + (f" ({title})" if title else ""))
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    return path


def _state_panel(ax: Any, rows: Mapping[int, list], lengths: list, marker: dict, cmap: Any) -> None:
    from matplotlib.ticker import NullFormatter

    grows: list[str] = []
    labelled: set[str] = set()
    for L, group in rows.items():
        shade = lengths.index(L) / max(1, len(lengths) - 1)
        for row in group:
            if row["state"] is None:
                grows.append(f"{row['model']} (L={L})")
                continue
            ax.scatter(
                max(1, row["state"]),
                row["accuracy"],
                marker=marker[row["model"]],
                color=cmap(0.15 + 0.7 * shade),
                s=60,
                edgecolor="black",
                linewidth=0.5,
                label=None if row["model"] in labelled else row["model"],
            )
            labelled.add(row["model"])
            ax.annotate(f"L={L}", (max(1, row["state"]), row["accuracy"]), fontsize=7,
                        textcoords="offset points", xytext=(5, 4))  # fmt: skip
    ax.set_xscale("log")
    ax.xaxis.set_minor_formatter(NullFormatter())  # no overlapping minor labels
    ax.set_xlabel("recurrent state per sequence (elements, log)")
    ax.set_title("accuracy vs state size (Based paper, Fig. 2)", fontsize=9)
    if grows:
        ax.text(0.01, 0.01, "state grows, not shown: " + ", ".join(grows), fontsize=6,
                transform=ax.transAxes)  # fmt: skip


def _length_panel(
    ax: Any, rows: Mapping[int, list], lengths: list, models: list, marker: dict, chance: dict
) -> None:
    for model in models:
        points = [(L, r["accuracy"]) for L, g in rows.items() for r in g if r["model"] == model]
        ax.plot(*zip(*points, strict=True), marker=marker[model], label=model)
    levels = [chance.get(L) for L in lengths]
    ax.plot(lengths, levels, ":", color="grey")
    ax.scatter(lengths, levels, marker="_", s=500, color="grey", label="chance")
    ax.set_xscale("log", base=2)
    ax.set_xticks(lengths, [str(n) for n in lengths])
    ax.set_xlabel("sequence length")
    ax.set_title("accuracy vs sequence length", fontsize=9)


def _width_panel(
    ax: Any, group: list, length: int, models: list, marker: dict, chance: float | None
) -> None:
    for model in models:
        points = sorted((r["hidden"], r["accuracy"]) for r in group if r["model"] == model)
        if points:
            ax.plot(*zip(*points, strict=True), marker=marker[model], label=model)
    if chance is not None:
        ax.axhline(chance, linestyle=":", color="grey", label="chance")
    ax.set_xscale("log", base=2)
    widths = sorted({r["hidden"] for r in group})
    ax.set_xticks(widths, [str(w) for w in widths])
    ax.set_xlabel("model width")
    ax.set_title(f"L={length} (Zoology, Fig. 2)", fontsize=9)

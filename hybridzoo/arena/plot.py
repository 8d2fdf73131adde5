"""The arena's figure (needs matplotlib, the ``plot`` extra): accuracy against recurrent-state
size, as in Zoology's Figure 2, and accuracy against sequence length."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

MISSING_MATPLOTLIB = (
    "the arena plot needs matplotlib, which is not installed: pip install 'hybridzoo[plot]' "
    "(or run with --no-plot)"
)


def plot_results(payload: Mapping[str, Any], path: str | Path) -> Path:
    """Write the two-panel PNG of an arena results payload to ``path``; return the path.

    Raises ``ImportError`` with an installation hint when matplotlib is missing.
    """
    try:
        from matplotlib import colormaps
        from matplotlib.figure import Figure
    except ImportError as exc:
        raise ImportError(MISSING_MATPLOTLIB) from exc

    runs = [r for r in payload.get("runs") or [] if r.get("accuracy") is not None]
    patterns = list(dict.fromkeys(r["pattern"] for r in runs))
    lengths = sorted({r["seq_len"] for r in runs})
    markers = "osD^vP*Xh<>"
    fig = Figure(figsize=(11, 4.2))  # no pyplot: no global state, no GUI backend
    left, right = fig.subplots(1, 2)
    cmap = colormaps["viridis"]
    for i, pattern in enumerate(patterns):
        mine = sorted((r for r in runs if r["pattern"] == pattern), key=lambda r: r["seq_len"])
        for run in mine:
            shade = lengths.index(run["seq_len"]) / max(1, len(lengths) - 1)
            left.scatter(
                max(1, run["state_size"]),
                run["accuracy"],
                marker=markers[i % len(markers)],
                color=cmap(0.15 + 0.7 * shade),
                s=60,
                edgecolor="black",
                linewidth=0.5,
                label=pattern if run is mine[0] else None,
            )
            left.annotate(
                f"L={run['seq_len']}",
                (max(1, run["state_size"]), run["accuracy"]),
                textcoords="offset points",
                xytext=(5, 4),
                fontsize=7,
            )
        right.plot(
            [r["seq_len"] for r in mine],
            [r["accuracy"] for r in mine],
            marker=markers[i % len(markers)],
            label=pattern,
        )
    left.set_xscale("log")
    left.set_xlabel("recurrent state per sequence (elements, log scale)")
    left.set_ylabel("held-out accuracy")
    left.set_title("accuracy vs state size (colour: sequence length)")
    left.set_ylim(-0.02, 1.08)
    left.legend(fontsize=8, title="pattern")
    right.set_xscale("log", base=2)
    right.set_xticks(lengths, [str(n) for n in lengths])
    right.set_xlabel("sequence length")
    right.set_ylabel("held-out accuracy")
    right.set_title("accuracy vs sequence length")
    right.set_ylim(-0.02, 1.08)
    right.legend(fontsize=8, title="pattern")
    task = payload.get("task", "")
    budget = payload.get("budget")
    fig.suptitle(f"hybridzoo arena: {task}, ~{budget:,} parameters per model" if budget else task)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    return path

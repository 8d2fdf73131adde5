"""The arena's leaderboard text and plot."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from hybridzoo.arena.plot import MISSING_MATPLOTLIB, plot_results
from hybridzoo.arena.report import format_leaderboard, rank_runs


def _run(pattern: str, seq_len: int, accuracy: float | None, loss: float = 1.0) -> dict:
    return {
        "pattern": pattern,
        "task": "mqar",
        "task_params": {"seq_len": seq_len, "num_kv_pairs": seq_len // 16},
        "seq_len": seq_len,
        "hidden_size": 64,
        "params": 100_000,
        "state_size": 4096 * (seq_len // 64),
        "accuracy": accuracy,
        "loss": loss,
        "steps": 100,
        "solved_step": None,
        "train_seconds": 1.0,
        "tokens_per_second": 1000.0,
        "step_latency_ms": None,
    }


PAYLOAD = {
    "budget": 100_000,
    "settings": {"seed": 0, "target_accuracy": 0.99},
    "device": "cpu",
    "world_size": 1,
    "task": "mqar",
    "runs": [
        _run("MM", 64, 0.4),
        _run("MA", 64, 0.995, 0.01),
        _run("AA", 64, 0.995, 0.02),
        _run("MA", 128, float("nan")),
        _run("MM", 128, 0.2),
    ],
}


def test_rank_runs_best_first() -> None:
    ranked = rank_runs(PAYLOAD["runs"][:3])
    assert [r["pattern"] for r in ranked] == ["MA", "AA", "MM"]


def test_leaderboard_groups_by_length_and_ranks() -> None:
    text = format_leaderboard(PAYLOAD)
    assert "budget 100,000" in text
    block64, block128 = text.split("mqar L=64")[1].split("mqar L=128")
    rows64 = [line.split()[1] for line in block64.splitlines()[3:6]]
    assert rows64 == ["MA", "AA", "MM"]
    assert "nan" in block128 and block128.index("MM") < block128.index("MA")


def test_plot_writes_a_png(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    path = plot_results(PAYLOAD, tmp_path / "plot.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plot_without_matplotlib_says_how_to_install(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(ImportError, match="hybridzoo\\[plot\\]") as info:
        plot_results(PAYLOAD, tmp_path / "plot.png")
    assert str(info.value) == MISSING_MATPLOTLIB

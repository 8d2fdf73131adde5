"""The arena's leaderboard text and plot: chance levels, seeds, learning rates, the budget."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from hybridzoo.arena.plot import MISSING_MATPLOTLIB, plot_results
from hybridzoo.arena.report import NOT_LEARNED, format_leaderboard, summarize


def _run(model: str, seq_len: int, accuracy: float, *, lr=3e-3, seed=0, solved=False, **kw):
    return {
        "model": model,
        "pattern": {"conv-attn": "AA"}.get(model, model),
        "task": "mqar",
        "task_params": {"seq_len": seq_len, "num_kv_pairs": seq_len // 16},
        "seq_len": seq_len,
        "chance": 16 / seq_len,
        "hidden_size": 64,
        "params": 100_000,
        "state_size": None if model == "AA" else 4096,
        "lr": lr,
        "seed": seed,
        "batch_size": 128,
        "accuracy": accuracy,
        "best_accuracy": accuracy,
        "loss": 1.0 - accuracy,
        "steps": 150 if solved else 400,
        "sequences": (150 if solved else 400) * 128,
        "solved": solved,
        "solved_step": 150 if solved else None,
        "train_seconds": 1.0,
        "tokens_per_second": 1000.0,
        "step_latency_ms": 0.3,
        **kw,
    }


RUNS = [
    # L=64 (chance 0.25): a learning-rate sweep on seed 0, then seeds 1 and 2 at the best rate
    _run("conv-attn", 64, 0.60, lr=1e-3),
    _run("conv-attn", 64, 0.995, lr=3e-3, solved=True),
    _run("conv-attn", 64, 0.991, lr=3e-3, seed=1, solved=True),
    _run("conv-attn", 64, 0.97, lr=3e-3, seed=2),
    _run("MM", 64, 0.27, lr=1e-3),
    _run("MM", 64, 0.24, lr=3e-3),
    _run("RR", 64, 0.90, lr=3e-3),
    _run("AA", 64, 0.30, lr=3e-3, diverged=True),
    # L=128 (chance 0.125)
    _run("conv-attn", 128, 0.992, lr=3e-3, solved=True),
    _run("RR", 128, 0.60, lr=3e-3),
    _run("MM", 128, 0.13, lr=1e-3),
]
PAYLOAD = {
    "title": "test",
    "task": "mqar",
    "budget": 100_000,
    "settings": {"target_accuracy": 0.99},
    "stages": [
        {"name": "lr sweep", "seq_lens": [64], "lrs": [1e-3, 3e-3], "seeds": [0]},
        {"name": "seeds", "seq_lens": [64, 128], "lrs": None, "seeds": [0, 1, 2]},
    ],
    "chosen_lrs": {"conv-attn": 3e-3, "MM": 1e-3, "RR": 3e-3, "AA": 3e-3},
    "chance_margin": 0.05,
    "reference": {
        "name": "Zoology",
        "sequences_per_run": 6_400_000,
        "learning_rates": 4,
        "note": "vocabulary 8192",
    },
    "unavailable": [["gdn", "layer 'D' is not installed"]],
    "device": "cpu",
    "world_size": 1,
    "jobs": 2,
    "runs": RUNS,
}


def test_summaries_use_the_chosen_rate_and_aggregate_seeds() -> None:
    rows = summarize([r for r in RUNS if r["seq_len"] == 64], PAYLOAD["chosen_lrs"], 0.05)
    assert [r["model"] for r in rows] == ["conv-attn", "RR", "AA", "MM"]
    best = rows[0]
    assert best["lr"] == 3e-3 and best["seeds"] == 3 and best["solved"] == 2
    assert best["accuracy"] == 0.991 and (best["low"], best["high"]) == (0.97, 0.995)
    assert best["lrs"] == {1e-3: 0.60, 3e-3: 0.991}
    # MM's chosen rate is 1e-3 (0.27): within 0.05 of chance (0.25), so not learned
    assert rows[3]["lr"] == 1e-3 and not rows[3]["learned"] and rows[1]["learned"]
    # no chosen rate: a row takes its own best (Zoology's best of k)
    assert summarize(RUNS[4:6], {}, 0.05)[0]["lr"] == 1e-3


def test_leaderboard_states_chance_budget_rates_and_marks_untrained_rows() -> None:
    text = format_leaderboard(PAYLOAD)
    head, rest = text.split("\nmqar L=64", 1)
    assert "budget 100,000" in head and "2 job(s)" in head
    assert "stage 'lr sweep': L=64; learning rate(s) 0.001, 0.003; seed(s) 0" in head
    assert "each model's best so far" in head
    assert "sequences seen per run: median 51,200, max 51,200" in head
    assert "6,400,000 sequences per run, best of 4" in head and "0.8% of one reference" in head
    assert "not run: gdn: layer 'D' is not installed" in head
    block64, block128 = rest.split("\nmqar L=128")
    assert "chance level 0.250" in block64 and "chance level 0.125" in block128
    lines = [line for line in block64.splitlines() if line[:1] in "123-" and "  " in line]
    ranked = {line.split()[1]: line for line in lines if not line.startswith("--")}
    assert ranked["conv-attn"].startswith("1 ") and "0.991 [0.970-0.995]" in ranked["conv-attn"]
    assert "2/3" in ranked["conv-attn"] and ranked["RR"].startswith("2 ")
    assert ranked["MM"].startswith("- ") and NOT_LEARNED in ranked["MM"]
    assert "1 diverged" in ranked["AA"] and "grows" in ranked["AA"]
    sweep = block64.split("learning rates at L=64")[1]
    assert "0.991*" in sweep and "0.600" in sweep
    assert "learning rates at" not in block128  # one rate per model there


def test_plot_writes_a_png(tmp_path: Path) -> None:
    path = plot_results(PAYLOAD, tmp_path / "plot.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    widths = {**PAYLOAD, "figures": ["width", "state"], "budget": None, "chosen_lrs": {}}
    widths["runs"] = [{**r, "hidden_size": h} for r in RUNS for h in (64, 128)]
    assert plot_results(widths, tmp_path / "w.png").stat().st_size > 0


def test_plot_without_matplotlib_says_how_to_install(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(ImportError, match="matplotlib") as info:
        plot_results(PAYLOAD, tmp_path / "plot.png")
    assert str(info.value) == MISSING_MATPLOTLIB

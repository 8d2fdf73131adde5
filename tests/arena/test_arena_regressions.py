"""Arena defects of the fault pass (issue 8 #10-#12), each pinned by a test that failed before
its fix: full-window attention, checkpoint names, unchecked values, non-standard JSON."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from hybridzoo.arena import cli
from hybridzoo.arena.runner import strict_json, write_json
from hybridzoo.arena.train import TrainSettings
from hybridzoo.errors import ConfigError

TINY = [
    "--seq-lens", "16", "--vocab-size", "32", "--num-kv-pairs", "2", "--steps", "4",
    "--eval-every", "2", "--eval-examples", "16", "--batch-size", "8", "--hidden-size", "16",
    "--layer-option", "attention_num_heads=2", "--lr", "3e-3", "--seeds", "0", "--jobs", "1",
    "--no-progress", "--no-plot", "--device", "cpu",
]  # fmt: skip


def _strict(text: str) -> dict:
    def refuse(name: str) -> None:
        raise ValueError(f"non-standard JSON constant {name}")

    return json.loads(text, parse_constant=refuse)


def test_full_window_attention_finishes_and_resumes(tmp_path: Path, capsys) -> None:
    # before: int(None) while assembling the result, lost the run, and again on --resume
    argv = [*TINY, "--patterns", "AF", "--layer-option", "attention_window_size=None"]
    argv += ["--out", str(tmp_path)]
    assert cli.main(argv) == 0
    run = _strict((tmp_path / "results.json").read_text())["runs"][0]
    assert run["layer_options"]["attention_window_size"] is None and run["state_size"] is None
    assert "grows" in capsys.readouterr().out
    assert cli.main([*argv, "--resume"]) == 0
    again = _strict((tmp_path / "results.json").read_text())["runs"][0]
    assert again["loss"] == run["loss"]


def test_checkpoints_are_named_by_the_run_key(tmp_path: Path) -> None:
    # before: "(A F)*2" and "A F*2" (different models of one width) both wrote
    # checkpoints/mqar-L16-A-F-2-h16.pt, so --resume always aborted
    argv = [*TINY, "--no-match", "--patterns", "(A F)*2", "A F*2", "AF", "A F"]
    argv += ["--out", str(tmp_path)]
    assert cli.main(argv) == 0
    files = sorted(p.name for p in (tmp_path / "checkpoints").glob("*.pt"))
    assert len(files) == 3, files  # "A F" is the same model as "AF": trained once
    payload = _strict((tmp_path / "results.json").read_text())
    assert [r["model"] for r in payload["runs"]] == ["(A F)*2", "A F*2", "AF"]
    assert payload["unavailable"] == [["A F", "the same model as 'AF': trained and shown once"]]
    assert cli.main([*argv, "--resume"]) == 0
    again = _strict((tmp_path / "results.json").read_text())
    assert [r["loss"] for r in again["runs"]] == [r["loss"] for r in payload["runs"]]


@pytest.mark.parametrize(
    ("flag", "value"),
    [
        ("--lr", "inf"),
        ("--lr", "nan"),
        ("--lr", "0"),
        ("--lrs", "-0.001"),
        ("--target-accuracy", "-1"),
        ("--target-accuracy", "0"),
        ("--target-accuracy", "1.5"),
        ("--steps", "0"),
    ],
)
def test_bad_values_are_usage_errors(flag: str, value: str, capsys) -> None:
    # before: --lr inf trained to a NaN loss; --target-accuracy -1 marked every model solved
    with pytest.raises(SystemExit) as exit_info:
        cli.main([flag, value, "--no-progress"])
    assert exit_info.value.code == 2
    error = capsys.readouterr().err
    assert flag in error and value in error


@pytest.mark.parametrize(
    ("field", "value"),
    [("lr", math.inf), ("lr", 0.0), ("target_accuracy", -1.0), ("target_accuracy", 0.0),
     ("seed", -1), ("steps", 2.5), ("dtype", "float16"), ("warmup_fraction", 1.0)],
)  # fmt: skip
def test_train_settings_refuse_bad_values(field: str, value: object) -> None:
    with pytest.raises(ConfigError, match=rf"{field}={value!r}"):
        TrainSettings(**{field: value})


def test_results_json_is_strict_even_when_a_run_diverges(tmp_path: Path) -> None:
    # before: a NaN loss was written as the non-standard NaN (and an inf lr as Infinity)
    argv = [*TINY, "--patterns", "AF", "--lr", "1e6", "--out", str(tmp_path)]
    assert cli.main(argv) == 0
    run = _strict((tmp_path / "results.json").read_text())["runs"][0]
    assert run["diverged"] is True and run["loss"] is None
    assert "diverged" in (tmp_path / "leaderboard.txt").read_text()
    path = tmp_path / "x.json"
    write_json(path, {"a": [math.nan, -math.inf, 1.5], "b": {"c": math.inf}})
    assert _strict(path.read_text()) == {"a": [None, None, 1.5], "b": {"c": None}}
    assert strict_json((1, math.nan)) == [1, None]


class _ScriptedPool:
    """Stands in for the arena's executor: each run "reaches" the accuracy ``score(run)``."""

    def __init__(self, score, **_: object) -> None:
        self.score = score

    def __enter__(self):
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def run(self, runs, **_: object):
        for run in runs:
            spec, settings = run.spec, run.settings
            accuracy = self.score(settings.lr, spec.task_params["seq_len"])
            yield run, {
                "done": True, "model": run.model, "pattern": spec.pattern, "task": spec.task,
                "seq_len": spec.task_params["seq_len"], "chance": 0.1, "hidden_size": 16,
                "params": 1000, "state_size": 10, "flops_per_token": 1.0, "lr": settings.lr,
                "seed": settings.seed, "accuracy": accuracy, "best_accuracy": accuracy,
                "loss": 1.0 - accuracy, "solved": False, "diverged": False, "steps": 4,
                "sequences": 32, "train_seconds": 1.0, "tokens_per_second": 1.0,
                "step_latency_ms": 1.0, "history": [], "name": run.name,
            }  # fmt: skip


def test_a_stage_that_reuses_the_chosen_rates_does_not_change_them(tmp_path, monkeypatch):
    # before: after the seeds stage the rates were chosen again over every run, so the longer
    # length's poor runs at the sweep's best rate outvoted it, and the leaderboard showed each
    # fixed-state model's single sweep run at a worse rate instead of its three seeds
    from hybridzoo.arena import runner
    from hybridzoo.arena.plan import ArenaConfig
    from hybridzoo.arena.presets import Stage

    def score(lr: float, seq_len: int) -> float:  # 1e-2 best at 16, useless at 32
        return {(1e-3, 16): 0.6, (1e-2, 16): 0.9}.get((lr, seq_len), 0.0)

    monkeypatch.setattr(runner, "Executor", lambda **kw: _ScriptedPool(score, **kw))
    config = ArenaConfig(
        patterns=("MM",),
        task="mqar",
        task_params={"vocab_size": 64, "num_kv_pairs": 2},
        stages=(
            Stage(name="sweep", seq_lens=(16,), lrs=(1e-3, 1e-2)),
            Stage(name="seeds", seq_lens=(16, 32), seeds=(0, 1, 2)),
        ),
        hidden_size=16,
        train=TrainSettings(steps=4, batch_size=8, eval_every=2, eval_examples=16),
        out=tmp_path,
    )
    payload = runner.run_arena(config, progress=False, plot=False)
    assert payload["chosen_lrs"] == {"MM": 1e-2}
    seeds = [r for r in payload["runs"] if r["stage"] == "seeds"]
    assert {r["lr"] for r in seeds} == {1e-2} and len(seeds) == 5  # seed 0 at 16 is the sweep's
    board = (tmp_path / "leaderboard.txt").read_text()
    assert "3/3" not in board and "0/3" in board  # three seeds per length, not one sweep run

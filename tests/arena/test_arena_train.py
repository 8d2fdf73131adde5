"""Arena training: the loss decreases, resume continues exactly, budgets match, the CLI runs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import hybridzoo
from hybridzoo.arena import cli
from hybridzoo.arena.runner import (
    ArenaConfig,
    match_hidden_size,
    plan_runs,
    scaled_layer_options,
    task_params_for,
)
from hybridzoo.arena.train import RunSpec, TrainSettings, train_run
from hybridzoo.errors import CheckpointError

TASK = {"vocab_size": 32, "seq_len": 16, "num_kv_pairs": 2}
OPTIONS = {"attention_num_heads": 2, "attention_head_dim": 8, "attention_window_size": 16}


def _spec(pattern: str = "AF", hidden_size: int = 16) -> RunSpec:
    return RunSpec(
        pattern=pattern,
        task="mqar",
        task_params=TASK,
        hidden_size=hidden_size,
        layer_options=OPTIONS,
    )


def _settings(**changes) -> TrainSettings:
    base = {
        "steps": 12,
        "batch_size": 16,
        "eval_every": 4,
        "eval_examples": 32,
        "checkpoint_every": 4,
        "lr": 1e-2,
        "dropout": 0.1,  # so that resuming must restore the RNG state too
        "target_accuracy": None,
    }
    return TrainSettings(**{**base, **changes})


def test_training_decreases_the_loss() -> None:
    result, model = train_run(
        _spec(), _settings(steps=40, eval_every=10, dropout=0.0), progress=False
    )
    losses = [r["loss"] for r in result["history"]]
    assert result["done"] and result["steps"] == 40 and model is not None
    assert losses[-1] < losses[0] - 0.3, losses
    assert result["params"] == _spec().param_count()
    assert result["state_size"] > 0 and result["step_latency_ms"] > 0
    assert 0.0 <= result["accuracy"] <= 1.0


def test_resume_gives_the_same_result_as_an_uninterrupted_run(tmp_path: Path) -> None:
    settings = _settings()
    straight, model = train_run(
        _spec(), settings, checkpoint_path=tmp_path / "a.pt", progress=False
    )
    partial, _ = train_run(
        _spec(), settings, checkpoint_path=tmp_path / "b.pt", progress=False, stop_after=6
    )
    assert not partial["done"] and partial["step"] == 6
    resumed, resumed_model = train_run(
        _spec(), settings, checkpoint_path=tmp_path / "b.pt", resume=True, progress=False
    )
    assert resumed["steps"] == straight["steps"] == 12
    for key in ("loss", "accuracy"):
        assert [r[key] for r in resumed["history"]] == [r[key] for r in straight["history"]]
    a, b = model.state_dict(), resumed_model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    # a finished run is read back from its checkpoint, not retrained
    again, none = train_run(
        _spec(), settings, checkpoint_path=tmp_path / "b.pt", resume=True, progress=False
    )
    assert none is None and again["loss"] == resumed["loss"]
    # a checkpoint of other settings is refused
    with pytest.raises(ValueError, match="other settings"):
        train_run(
            _spec(),
            _settings(lr=1e-3),
            checkpoint_path=tmp_path / "b.pt",
            resume=True,
            progress=False,
        )


def test_training_is_deterministic_for_a_seed() -> None:
    first, _ = train_run(_spec(), _settings(steps=4), progress=False, measure_latency=False)
    second, _ = train_run(_spec(), _settings(steps=4), progress=False, measure_latency=False)
    assert first["history"][-1]["loss"] == second["history"][-1]["loss"]


def test_early_stop_at_the_target_accuracy() -> None:
    # 0.05: below the accuracy this seed reaches at the first evaluation (0.094)
    result, _ = train_run(
        _spec(), _settings(target_accuracy=0.05), progress=False, measure_latency=False
    )
    assert result["solved"] and result["solved_step"] == 4 and result["steps"] == 4


def test_match_hidden_size_picks_the_closest_count() -> None:
    budget = 60_000
    hidden, count = match_hidden_size("AA", budget=budget, vocab_size=512, seq_len=64)
    for other in (hidden - 8, hidden + 8):
        spec = RunSpec(
            pattern="AA",
            task="mqar",
            task_params={"vocab_size": 512, "seq_len": 64, "num_kv_pairs": 4},
            hidden_size=other,
            layer_options=scaled_layer_options("AA", other, 64),
        )
        assert abs(spec.param_count() - budget) >= abs(count - budget)


def test_plan_runs_matches_budgets_across_patterns() -> None:
    config = ArenaConfig(patterns=("AA", "R", "AF"), seq_lens=(32, 64), budget=80_000)
    specs, budget = plan_runs(config)
    assert budget == 80_000 and len(specs) == 6
    counts = [s.param_count() for s in specs]
    assert all(abs(c - budget) / budget < 0.15 for c in counts), counts
    assert [s.task_params["num_kv_pairs"] for s in specs] == [2, 2, 2, 4, 4, 4]
    assert specs[0].layer_options["attention_window_size"] == 32


def test_task_params_for_keeps_explicit_pairs() -> None:
    assert task_params_for("mqar", {"num_kv_pairs": 3}, 128)["num_kv_pairs"] == 3
    assert "num_kv_pairs" not in task_params_for("selective_copying", {}, 64)


def test_cli_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "arena"
    argv = [
        "--patterns", "AF", "F", "--seq-lens", "16", "--vocab-size", "32",
        "--steps", "4", "--eval-every", "2", "--eval-examples", "16", "--batch-size", "8",
        "--hidden-size", "16", "--layer-option", "attention_num_heads=2",
        "--lr", "3e-3", "--seeds", "0", "--jobs", "1",
        "--out", str(out), "--no-progress", "--device", "cpu",
    ]  # fmt: skip
    assert cli.main(argv) == 0
    printed = capsys.readouterr().out
    assert "AF" in printed and "accuracy" in printed
    payload = json.loads((out / "results.json").read_text())
    assert [r["pattern"] for r in payload["runs"]] == ["AF", "F"]
    assert (out / "leaderboard.txt").exists() and (out / "arena.png").stat().st_size > 0
    # resuming a finished arena retrains nothing and gives the same numbers
    assert cli.main([*argv, "--resume", "--no-plot"]) == 0
    again = json.loads((out / "results.json").read_text())
    assert [r["loss"] for r in again["runs"]] == [r["loss"] for r in payload["runs"]]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--seq-lens", "63"], "seq_len"),
        (["--patterns", "AQ"], "AQ"),
        (["--task-option", "num_pairs=3"], "num_pairs"),
    ],
)
def test_cli_reports_bad_input(argv: list[str], message: str, capsys) -> None:
    assert cli.main([*argv, "--no-progress"]) == 2
    assert message in capsys.readouterr().err


def test_bfloat16_is_refused_on_cpu() -> None:
    with pytest.raises(ValueError, match="bfloat16"):
        train_run(_spec(), _settings(dtype="bfloat16"), progress=False)


def test_float64_training_runs() -> None:
    result, model = train_run(
        _spec(), _settings(steps=2, dtype="float64"), progress=False, measure_latency=False
    )
    assert result["done"] and model.embedding.weight.dtype == torch.float64


class _Exploit:
    """Unpickling this object would write a marker file (a stand-in for arbitrary code)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.write_text, (self.marker, "pwned"))


def test_resume_never_runs_code_from_a_crafted_checkpoint(tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    path = tmp_path / "crafted.pt"
    torch.save({"format": 1, "payload": _Exploit(marker)}, path)
    with pytest.raises(CheckpointError, match="crafted.pt"):
        train_run(_spec(), _settings(), checkpoint_path=path, resume=True, progress=False)
    assert not marker.exists()


@pytest.mark.parametrize("kind", ["truncated", "foreign", "not_torch"])
def test_resume_refuses_a_broken_checkpoint_naming_the_file(tmp_path: Path, kind: str) -> None:
    path = tmp_path / "run.pt"
    settings = _settings(steps=4)
    train_run(_spec(), settings, checkpoint_path=path, stop_after=2, progress=False)
    if kind == "truncated":
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
    elif kind == "foreign":
        torch.save({"weights": torch.zeros(3)}, path)
    else:
        path.write_text("hello")
    with pytest.raises(CheckpointError, match=r"run\.pt"):
        train_run(_spec(), settings, checkpoint_path=path, resume=True, progress=False)


def test_width_scaling_comes_from_each_layers_spec() -> None:
    options = scaled_layer_options("MA", 64, 128, {"attention_num_heads": 2})
    assert options["attention_head_dim"] == 32 and options["attention_window_size"] == 128
    assert options["attention_num_heads"] == 2  # the user's value is kept
    assert not any(k.startswith("gla_") for k in options)  # no gla layer in "MA"
    kept = scaled_layer_options("A", 64, 128, {"attention_head_dim": 6})
    assert kept["attention_head_dim"] == 6  # a width the user chose wins over the scaling
    with pytest.raises(hybridzoo.OptionError, match="attention_num_head'.*attention_num_heads"):
        scaled_layer_options("A", 64, 128, {"attention_num_head": 2})

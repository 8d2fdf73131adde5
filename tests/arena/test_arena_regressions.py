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

"""Presets (the default run, --quick, --paper), their dry runs, a reduced --paper on CPU, and
--jobs: several runs at once give the numbers of one at a time."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest

from hybridzoo.arena import cli
from hybridzoo.arena.plan import ArenaConfig
from hybridzoo.arena.presets import ArenaModel, Stage, available_models, get_preset
from hybridzoo.arena.runner import run_arena
from hybridzoo.arena.spec import TrainSettings


def test_builtin_presets() -> None:
    default, quick, paper = (get_preset(n) for n in ("default", "quick", "paper"))
    assert [s.seq_lens for s in default.stages] == [(64,), (64, 128)]
    assert default.stages[0].lrs == (1e-3, 3e-3, 1e-2) and default.stages[1].lrs is None
    assert default.stages[1].seeds == (0, 1, 2)
    assert quick.label == "smoke test" and {m.name for m in default.models} < {
        m.name for m in quick.models
    }
    assert paper.task_params["vocab_size"] == 8192 and paper.widths == (64, 128, 256, 512)
    lrs = paper.stages[0].lrs
    assert len(lrs) == 4 and all(
        math.isclose(a, b) for a, b in zip(lrs, [1e-4, 10**-3.333, 10**-2.667, 1e-2], strict=True)
    )
    assert paper.train["epochs"] == 64 and paper.train["train_examples"] == 100_000
    assert paper.batch_sizes == {64: 512, 128: 512, 256: 256, 512: 128}
    zoology = next(m for m in paper.models if m.name == "attn-zoology")
    assert zoology.lm_options == {"positions": "learned"}
    ok, missing = available_models(paper.models)
    assert {m.name for m in ok} >= {"mamba", "rwkv6", "gla"}
    for _model, reason in missing:  # only what is not installed (yet) makes a model unavailable
        assert re.search(r"option\(s\) \w+|not accepted|not a symbol|unknown layer", reason)


def _runs_listed(text: str) -> int:
    return int(re.search(r"^(\d+) runs;", text, re.M).group(1))


def test_paper_dry_run_lists_every_run_and_its_cost(capsys) -> None:
    assert cli.main(["--paper", "--dry-run"]) == 0
    text = capsys.readouterr().out
    ok, missing = available_models(get_preset("paper").models)
    assert _runs_listed(text) == len(ok) * 4 * 4 * 4  # widths × learning rates × lengths
    for model, _ in missing:
        assert f"not run: {model.name}:" in text
    for line in ("figure 2  mamba  64", "figure 2  mamba  512"):
        assert re.search(line.replace("  ", r"\s+"), text)
    assert re.search(r"\b64\s+512\s+[\d,]+\s+0\.0001\s+0\s+12,544\s+512", text)
    assert re.search(r"\b512\s+512\s+[\d,]+\s+0\.01\s+0\s+50,048\s+128", text)  # 64 × 782 steps
    assert "FLOPs" in text and "upper bound" in text


def test_default_and_quick_dry_runs(capsys) -> None:
    assert cli.main(["--dry-run"]) == 0
    text = capsys.readouterr().out
    ok, _ = available_models(get_preset("default").models)
    # per model: 3 rates at L=64 (seed 0), then seeds 1, 2 at L=64 and 0, 1, 2 at L=128
    assert _runs_listed(text) == 8 * len(ok)
    assert cli.main(["--quick", "--dry-run"]) == 0
    quick = capsys.readouterr().out
    assert "smoke test" in quick
    assert _runs_listed(quick) == len(available_models(get_preset("quick").models)[0])


def test_a_reduced_paper_run_on_cpu(tmp_path: Path, capsys) -> None:
    argv = [
        "--paper", "--models", "rwkv6", "gla", "--widths", "16", "--seq-lens", "16", "32",
        "--lrs", "1e-3", "1e-2", "--train-examples", "64", "--epochs", "2", "--batch-size", "32",
        "--vocab-size", "64", "--eval-examples", "32", "--jobs", "1", "--no-progress",
        "--device", "cpu", "--out", str(tmp_path),
    ]  # fmt: skip
    assert cli.main(argv) == 0
    payload = json.loads((tmp_path / "results.json").read_text())
    runs = payload["runs"]
    assert len(runs) == 2 * 2 * 2  # models × lengths × learning rates, one width
    assert {r["steps"] for r in runs} == {4} and {r["sequences"] for r in runs} == {128}
    assert payload["widths"] == [16] and payload["chosen_lrs"] == {}  # best of 2 per point
    text = capsys.readouterr().out
    assert "Zoology Figure 2 protocol" in text and "learning rates at L=32" in text
    assert (tmp_path / "arena.png").stat().st_size > 0


def _config(out: Path, jobs: int) -> ArenaConfig:
    return ArenaConfig(
        patterns=(ArenaModel(pattern="AF", label="af"), "F"),
        task="mqar",
        task_params={"vocab_size": 32, "num_kv_pairs": 2},
        stages=(
            Stage(name="sweep", seq_lens=(16,), lrs=(1e-3, 1e-2), seeds=(0,)),
            Stage(name="seeds", seq_lens=(16,), seeds=(0, 1)),
        ),
        hidden_size=16,
        layer_options={"attention_num_heads": 2},
        train=TrainSettings(steps=6, batch_size=8, eval_every=3, eval_examples=16),
        jobs=jobs,
        out=out,
    )


def test_jobs_give_the_numbers_of_one_run_at_a_time(tmp_path: Path) -> None:
    serial = run_arena(_config(tmp_path / "one", 1), progress=False, plot=False)
    parallel = run_arena(_config(tmp_path / "two", 2), progress=False, plot=False)

    def numbers(payload: dict) -> list:
        return sorted((r["model"], r["lr"], r["seed"], r["loss"]) for r in payload["runs"])

    assert numbers(serial) == numbers(parallel)
    assert len(serial["runs"]) == 6  # 2 models × (2 rates, then 1 more seed at the best rate)
    assert set(serial["chosen_lrs"]) == {"af", "F"}
    for model, lr in serial["chosen_lrs"].items():
        seeds = {r["seed"] for r in serial["runs"] if r["model"] == model and r["lr"] == lr}
        assert seeds == {0, 1}
    checkpoints = sorted(p.name for p in (tmp_path / "two" / "checkpoints").glob("*.pt"))
    assert len(checkpoints) == 6


def test_runtime_layers_cannot_run_in_workers(tmp_path: Path) -> None:
    import attrs

    import hybridzoo
    from hybridzoo.errors import ConfigError

    @attrs.frozen
    class NoOptions:
        pass

    spec = hybridzoo.LayerSpec(
        name="identity_test", symbol="Q", option_prefix="identity_test", options=NoOptions,
        factory=lambda o, h: __import__("torch").nn.Identity(), param_count=lambda o, h: 0,
        description="identity", state_size=lambda o, h: 0,
    )  # fmt: skip
    with hybridzoo.get_registry().registered(spec):
        config = ArenaConfig(
            patterns=("QF", "F"),
            task_params={"vocab_size": 32, "num_kv_pairs": 2},
            seq_lens=(16,),
            hidden_size=16,
            train=TrainSettings(steps=2, batch_size=8, eval_every=2, eval_examples=8),
            jobs=2,
            out=tmp_path,
        )
        with pytest.raises(ConfigError, match="identity_test.*registered at run time"):
            run_arena(config, progress=False, plot=False)

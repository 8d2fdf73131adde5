"""``hybridzoo generate MODEL_DIR``: the library's outputs, prompts from flags, files and stdin,
sampling with a seed, eos, the progress bar, and usage errors (status 2)."""

from __future__ import annotations

import io
import json
import re

import pytest
import torch
from lm_helpers import tiny_lm

from hybridzoo.cli import main

PROMPTS = [[3, 1, 4, 1], [5], [9, 2]]


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    lm = tiny_lm("M A")
    path = tmp_path_factory.mktemp("lm") / "model"
    lm.save(path)
    return lm, path


def _run(capsys, *argv: str) -> tuple[int, str, str]:
    rc = main(["generate", *map(str, argv)])
    out = capsys.readouterr()
    return rc, out.out, out.err


def _flags(prompts: list[list[int]]) -> list[str]:
    return [a for p in prompts for a in ("--prompt", " ".join(map(str, p)))]


def test_greedy_outputs_are_the_librarys_with_a_progress_bar(saved, capsys) -> None:
    lm, path = saved
    rc, out, err = _run(capsys, path, *_flags(PROMPTS), "-n", 5)
    assert rc == 0
    expected = lm.generate(PROMPTS, 5)
    assert [list(map(int, line.split())) for line in out.splitlines()] == expected
    assert "generating" in err and "15/15" in err
    rc, out, err = _run(capsys, path, "--prompt", "3,1,4,1", "-n", 5, "--json", "--no-progress")
    assert rc == 0 and json.loads(out) == expected[:1] and err == ""


def test_prompts_from_a_file_and_from_stdin(saved, capsys, tmp_path, monkeypatch) -> None:
    lm, path = saved
    file = tmp_path / "prompts.txt"
    file.write_text("3 1 4 1\n\n5\n9,2\n")
    rc, out, _ = _run(capsys, path, "--prompt-file", file, "-n", 3, "--json")
    assert rc == 0 and json.loads(out) == lm.generate(PROMPTS, 3)
    monkeypatch.setattr("sys.stdin", io.StringIO("9 2\n"))
    rc, out, _ = _run(capsys, path, "--prompt", "5", "--prompt-file", "-", "-n", 3, "--json")
    assert rc == 0 and json.loads(out) == lm.generate(PROMPTS[1:], 3)


def test_sampling_with_a_seed_is_the_librarys_draw(saved, capsys) -> None:
    lm, path = saved
    argv = [path, *_flags(PROMPTS), "-n", 6, "--json", "--sample", "--top-k", 5]
    rc, out, _ = _run(capsys, *argv, "--temperature", 0.7, "--seed", 3)
    assert rc == 0
    draw = lm.generate(
        PROMPTS,
        6,
        do_sample=True,
        temperature=0.7,
        top_k=5,
        generator=torch.Generator().manual_seed(3),
    )
    assert json.loads(out) == draw


def test_each_row_stops_at_its_eos(saved, capsys) -> None:
    lm, path = saved
    free = lm.generate(PROMPTS, 6)
    eos = free[0][len(PROMPTS[0]) + 1]
    rc, out, _ = _run(capsys, path, *_flags(PROMPTS), "-n", 6, "--eos", eos, "--json")
    assert rc == 0 and json.loads(out) == lm.generate(PROMPTS, 6, eos_token_id=eos)
    assert len(json.loads(out)[0]) == len(PROMPTS[0]) + 2


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--prompt", "a b"], "a prompt is token ids separated by spaces or commas"),
        ([], "give at least one prompt"),
        (["--prompt", "1 99"], "token ids in 0..22"),
        (["--prompt", "1", "--temperature", "0.5"], "only apply to sampling"),
        (["--prompt", "1", "--sample", "--top-p", "2"], "top_p must be a number in"),
        (["--prompt", "1", "--seed", "1"], "--seed .* needs --sample"),
        (["--prompt", "1", "-n", "-1"], "max_new_tokens must be an integer >= 0"),
        (["--prompt", "1", "--dtype", "float33"], "not one of float32.*Did you mean 'float32'"),
        (["--prompt", "1", "--device", "gpu7"], "--device 'gpu7' is not a device"),
        (["--prompt-file", "missing.txt"], "--prompt-file missing.txt: no such file"),
    ],
)
def test_bad_arguments_exit_with_status_2_and_a_message(saved, capsys, argv, message) -> None:
    rc, _, err = _run(capsys, saved[1], *argv)
    assert rc == 2
    assert err.startswith("hybridzoo generate: error: ")
    assert re.search(message, err), err


def test_a_directory_without_a_language_model_is_refused(saved, capsys, tmp_path) -> None:
    lm, _ = saved
    lm.backbone.save(tmp_path / "backbone")
    rc, _, err = _run(capsys, tmp_path / "backbone", "--prompt", "1")
    assert rc == 2 and "holds a HybridModel, not a HybridLM" in err
    rc, _, err = _run(capsys, tmp_path / "nothing", "--prompt", "1")
    assert rc == 2 and "not a saved hybridzoo model" in err


def test_show_reads_a_saved_language_model(saved, capsys) -> None:
    """A converted checkpoint, once saved, shows its derived pattern and options, and the
    language model's own parameters with the whole model's count."""
    lm, path = saved
    assert main(["show", str(path)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("Layer pattern: M → A\nLegend: M=mamba, A=attention")
    assert "  mamba: MambaOptions(state_size=4" in out and "window_size=6" in out
    c = lm.config
    assert (
        f"language model: vocab_size {c.vocab_size}, embedding {c.vocab_size * c.embed_dim:,}"
        in out
    )
    assert f"; {lm.param_count():,} parameters in all" in out
    assert main(["show", str(path), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    shown, backbone = data["language_model"], sum(row["params"] for row in data["rows"])
    assert shown["total"] == lm.param_count() == backbone + shown["embedding"] + shown["head"]
    assert main(["show", str(path), "--hidden-size", "8"]) == 2
    assert "holds a saved model: its config sets every option" in capsys.readouterr().err

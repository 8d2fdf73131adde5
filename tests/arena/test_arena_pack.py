"""``--pack K``: the arena trains on rows of K examples packed end to end, each its own document
(``seq_idx``), with exactly the maths of the unpacked batch."""

from __future__ import annotations

import pytest
import torch

import hybridzoo
from hybridzoo.arena import cli
from hybridzoo.arena.lm import build_language_model
from hybridzoo.arena.tasks import Batch, make_task
from hybridzoo.arena.train import RunSpec, TrainSettings, train_run
from hybridzoo.errors import ConfigError

TASK = {"vocab_size": 32, "seq_len": 16, "num_kv_pairs": 2}
OPTIONS = {
    "attention_num_heads": 2,
    "attention_head_dim": 8,
    "attention_window_size": None,
    "mamba_state_size": 4,
}


def _run(pack: int, **spec: object) -> dict:
    run = RunSpec(
        pattern="M A", task="mqar", task_params=TASK, hidden_size=16, layer_options=OPTIONS, **spec
    )
    settings = TrainSettings(
        steps=6,
        batch_size=16,
        eval_every=3,
        eval_examples=16,
        lr=1e-2,
        dropout=0.0,
        dtype="float64",
        target_accuracy=None,
        pack=pack,
    )
    result, _ = train_run(run, settings, progress=False, measure_latency=False)
    return result


def test_packed_training_follows_the_unpacked_run() -> None:
    # learned absolute positions restart in every document, as each example alone
    lm = {"lm_options": {"positions": "learned"}}
    plain, packed = _run(1, **lm), _run(4, **lm)
    for a, b in zip(plain["history"], packed["history"], strict=True):
        assert b["train_loss"] == pytest.approx(a["train_loss"], rel=1e-9)
        assert b["loss"] == pytest.approx(a["loss"], rel=1e-9)


def test_a_batch_packs_its_examples_row_by_row() -> None:
    batch = make_task("mqar", **TASK).generate(6, seed=0)
    packed, seq_idx = batch.packed(3)
    assert packed.inputs.shape == (2, 48) and packed.targets.shape == (2, 48)
    assert torch.equal(packed.inputs[1, 16:32], batch.inputs[4])
    assert torch.equal(packed.targets[0, 32:], batch.targets[2])
    assert seq_idx.tolist() == [[0] * 16 + [1] * 16 + [2] * 16] * 2
    assert batch.packed(1) == (batch, None)


def test_the_packed_lm_equals_the_lm_on_each_example() -> None:
    torch.manual_seed(0)
    lm = build_language_model("M A", vocab_size=32, hidden_size=16, **OPTIONS).eval()
    batch = make_task("mqar", **TASK).generate(4, seed=1)
    packed, seq_idx = batch.packed(2)
    with torch.no_grad():
        logits = lm(packed.inputs, seq_idx=seq_idx).view(4, 16, -1)
        torch.testing.assert_close(logits, lm(batch.inputs))
        # without the boundaries the second example of a row would see the first
        assert not torch.allclose(lm(packed.inputs).view(4, 16, -1)[1], logits[1])


def test_pack_must_divide_the_batch() -> None:
    run = RunSpec(pattern="M", task="mqar", task_params=TASK, hidden_size=16)
    with pytest.raises(ConfigError, match=r"times the examples packed per row \(pack=3\)"):
        train_run(run, TrainSettings(steps=1, batch_size=16, pack=3), progress=False)


def test_the_last_position_readout_cannot_pack() -> None:
    lm = build_language_model("M", vocab_size=8, hidden_size=8, readout="last", max_len=4)
    with pytest.raises(hybridzoo.PackingError, match="readout='last'"):
        lm(torch.zeros(1, 4, dtype=torch.long), seq_idx=torch.tensor([[0, 0, 1, 1]]))


def test_the_cli_passes_pack_to_the_settings() -> None:
    import argparse

    from hybridzoo.arena.configure import build_config

    parser = argparse.ArgumentParser()
    cli.configure_parser(parser)
    args = parser.parse_args(["--quick", "--patterns", "M", "--pack", "4"])
    config = build_config(args, "quick", lambda text: text, lambda device, runs: 1)
    assert config.train.pack == 4


def test_batch_packed_keeps_the_batch_type() -> None:
    batch = Batch(torch.arange(8).view(2, 4), torch.arange(8).view(2, 4))
    packed, seq_idx = batch.packed(2)
    assert isinstance(packed, Batch) and packed.inputs.tolist() == [list(range(8))]
    assert seq_idx.tolist() == [[0, 0, 0, 0, 1, 1, 1, 1]]

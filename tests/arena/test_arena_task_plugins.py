"""Tasks as plugins: the entry-point group hybridzoo.tasks, isolation of broken plugins, the
MQAR filler settings, and the MAD tasks' generators with their chance levels."""

from __future__ import annotations

import importlib.metadata as md
import sys
import textwrap
from pathlib import Path

import attrs
import pytest
import torch

import hybridzoo
from hybridzoo.arena.plugins import ArenaRegistry, use_arena_registry
from hybridzoo.arena.tasks import IGNORE_INDEX, make_task, param, task_params_for
from hybridzoo.errors import ConfigError, PluginError
from hybridzoo_plugins.arena.mad import Compression, FuzzyRecall, NoisyRecall
from hybridzoo_plugins.arena.mqar import MQAR


def _decoys(batch, task: MQAR) -> float:
    """Fraction of queries whose key also appears in the filler before the query."""
    ctx, hits, total = task.context_len, 0, 0
    for row, targets in zip(batch.inputs, batch.targets, strict=True):
        for pos in (targets != IGNORE_INDEX).nonzero().flatten().tolist():
            before = row[ctx:pos]
            hits += int((before == row[pos]).sum() > 0)
            total += 1
    return hits / total


def test_mqar_filler_is_zero_by_default_and_random_plants_decoys() -> None:
    assert MQAR().filler == "zero"
    task = MQAR(vocab_size=512, seq_len=64, num_kv_pairs=4, filler="random")
    rate = _decoys(task.generate(3000, seed=0), task)
    assert 0.017 < rate < 0.032  # the Based-paper setting: ~2.4% of queries at L=64, V=512
    clean = MQAR(vocab_size=512, seq_len=64, num_kv_pairs=4, filler="random_no_decoy")
    batch = clean.generate(500, seed=0)
    assert _decoys(batch, clean) == 0.0
    keys = batch.inputs[:, 0 : clean.context_len : 2]
    region = batch.inputs[:, clean.context_len :]
    filler = batch.targets[:, clean.context_len :] == IGNORE_INDEX
    for row in range(len(batch)):
        assert not bool(torch.isin(region[row][filler[row]], keys[row]).any())
    assert int(region[filler].max()) >= 500  # the filler still spans the vocabulary


def test_mqar_pairs_follow_zoology_and_chance_is_one_over_k() -> None:
    pairs = {L: task_params_for("mqar", {}, L)["num_kv_pairs"] for L in (64, 128, 256, 512)}
    assert pairs == {64: 4, 128: 8, 256: 16, 512: 64}
    assert task_params_for("mqar", {"num_kv_pairs": 3}, 512)["num_kv_pairs"] == 3
    assert make_task("mqar", seq_len=512, num_kv_pairs=64, vocab_size=8192).chance_level == 1 / 64
    with pytest.raises(ConfigError, match="filler"):
        MQAR(filler="noise")


def test_noisy_recall_generator() -> None:
    task = NoisyRecall(vocab_size=32, seq_len=64, noise_vocab_size=16, frac_noise=0.3)
    batch = task.generate(64, seed=1)
    assert batch.inputs.shape == batch.targets.shape == (64, 64)
    nk, nv = task.num_keys, task.num_values
    assert task.chance_level == 1 / nv == 1 / 8
    pairs = batch.inputs.view(64, -1, 2)
    noise = pairs[..., 0] >= nk + nv
    assert bool((pairs[noise] >= 16).all()) and 0.15 < float(noise.float().mean()) < 0.45
    assert not bool(noise[:, -1].any()) and bool((batch.targets[:, -2] != IGNORE_INDEX).all())
    for row in range(64):
        table: dict[int, int] = {}
        for slot, (key, value) in enumerate(pairs[row].tolist()):
            target = int(batch.targets[row, 2 * slot])
            if noise[row, slot]:
                assert target == IGNORE_INDEX
                continue
            assert 0 <= key < nk <= value < nk + nv
            assert target == (value if key in table else IGNORE_INDEX)
            assert table.setdefault(key, value) == value  # one value per key
    assert bool((batch.targets[:, 1::2] == IGNORE_INDEX).all())
    quiet = NoisyRecall(frac_noise=0.0).generate(8, seed=0)
    assert int(quiet.inputs.max()) < 16


def test_fuzzy_recall_generator() -> None:
    task = FuzzyRecall(vocab_size=16, seq_len=64)
    batch = task.generate(32, seed=2)
    assert batch.inputs.shape == (32, 64) and task.chance_level == 1 / 8
    pad = task.vocab_size - 1
    scored = batch.targets != IGNORE_INDEX
    assert bool(scored[:, -2].all())  # the probe's value is always asked for
    for row in range(32):
        tokens = batch.inputs[row].tolist()
        start = next(i for i, t in enumerate(tokens) if t != pad)
        assert pad not in tokens[start:] and start < 2 * (task.key_motif + task.value_motif)
        for pos in scored[row].nonzero().flatten().tolist():
            target = int(batch.targets[row, pos])
            assert target == tokens[pos + 1] and 7 <= target < 15  # the next value token
    again = task.generate(32, seed=2)
    assert torch.equal(again.inputs, batch.inputs) and torch.equal(again.targets, batch.targets)


def test_compression_generator() -> None:
    task = Compression(vocab_size=16, seq_len=8)
    batch = task.generate(16, seed=3)
    assert Compression.readout == "last" and task.chance_level == 1 / 15
    assert bool((batch.inputs[:, -1] == 15).all()) and bool((batch.inputs[:, :-1] < 15).all())
    assert torch.equal(batch.targets[:, :-1], batch.inputs[:, :-1])
    assert bool((batch.targets[:, -1] == IGNORE_INDEX).all())


# -- plugins ------------------------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class Parity:
    """The parity of the tokens so far (a toy task of a third-party plugin)."""

    name = "parity"
    vocab_size: int = param(2, "two tokens")
    seq_len: int = param(8, "length")

    @property
    def chance_level(self) -> float:
        """1/2."""
        return 0.5

    def generate(self, num_examples: int, seed: int):
        from hybridzoo.arena.tasks import Batch, generator

        bits = torch.randint(2, (num_examples, self.seq_len), generator=generator(seed))
        return Batch(bits, bits.cumsum(1) % 2)


class GoodPlugin:
    @hybridzoo.hookimpl
    def hybridzoo_arena_tasks(self):
        return [Parity]


class GarbagePlugin:
    @hybridzoo.hookimpl
    def hybridzoo_arena_tasks(self):
        return "parity"


class ExitingPlugin:
    @hybridzoo.hookimpl
    def hybridzoo_arena_tasks(self):
        raise SystemExit(3)


class NotATaskPlugin:
    @hybridzoo.hookimpl
    def hybridzoo_arena_tasks(self):
        return [dict]


GOOD, GARBAGE, EXITING, NOT_A_TASK = (
    GoodPlugin(),
    GarbagePlugin(),
    ExitingPlugin(),
    NotATaskPlugin(),
)


def _ep(name: str, value: str) -> md.EntryPoint:
    return md.EntryPoint(name=name, value=value, group="hybridzoo.tasks")


def test_a_broken_task_plugin_is_reported_not_fatal(tmp_path: Path, monkeypatch) -> None:
    (tmp_path / "exits_at_import.py").write_text("raise SystemExit(2)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    here = Path(__file__).stem
    eps = [
        _ep("good", f"{here}:GOOD"),
        _ep("garbage", f"{here}:GARBAGE"),
        _ep("exits", f"{here}:EXITING"),
        _ep("not_a_task", f"{here}:NOT_A_TASK"),
        _ep("missing", "no_such_module_anywhere"),
        _ep("import_exit", "exits_at_import"),
        _ep("zz_again", f"{here}:GOOD"),  # the same task name again (loaded last)
    ]
    registry = ArenaRegistry(entry_points=eps, disabled=())
    assert list(registry.tasks()) == ["parity"]
    failed = {r.name: r.error for r in registry.failures()}
    assert set(failed) == {"garbage", "exits", "not_a_task", "missing", "import_exit", "zz_again"}
    assert "must return a list" in failed["garbage"] and "SystemExit" in failed["exits"]
    assert "attrs class" in failed["not_a_task"] and "already used" in failed["zz_again"]
    assert all("HYBRIDZOO_DISABLE_PLUGINS=" in e for e in failed.values())
    with use_arena_registry(registry):
        assert make_task("parity", seq_len=4).generate(2, 0).inputs.shape == (2, 4)
    strict = ArenaRegistry(entry_points=[_ep("garbage", f"{here}:GARBAGE")], strict=True)
    with pytest.raises(PluginError, match="garbage"):
        strict.tasks()
    off = ArenaRegistry(entry_points=eps[:1], disabled=["good"])
    assert off.tasks() == {} and off.plugins()[0].status == "disabled"


def test_builtin_tasks_come_from_the_entry_point_and_old_names_still_resolve() -> None:
    registry = ArenaRegistry(disabled=())
    assert registry.source("task", "mqar") == "hybridzoo"
    assert {"default", "quick", "paper"} <= set(registry.presets())
    import hybridzoo.arena.tasks as tasks

    with pytest.warns(DeprecationWarning, match="hybridzoo_plugins.arena.mqar.MQAR"):
        assert tasks.MQAR is MQAR
    with pytest.raises(ConfigError, match="noisy_recall"):
        make_task("noisy_recal")
    assert "parity" not in sys.modules.get("hybridzoo.arena.tasks").TASKS


def test_register_task_at_run_time() -> None:
    registry = ArenaRegistry(autoload=False)
    with use_arena_registry(registry):
        from hybridzoo.arena.tasks import register_task

        register_task("parity", Parity)
        assert make_task("parity").chance_level == 0.5
        with pytest.raises(PluginError, match="already registered"):
            register_task("parity", Parity)
        with pytest.raises(ConfigError, match="must agree"):
            register_task("other", Parity)


def test_arena_list_shows_tasks_presets_and_chance(capsys) -> None:
    from hybridzoo.arena import cli

    assert cli.main(["--list"]) == 0
    text = capsys.readouterr().out
    for word in ("mqar", "noisy_recall", "fuzzy_recall", "compression", "1/K", "quick"):
        assert word in textwrap.dedent(text)

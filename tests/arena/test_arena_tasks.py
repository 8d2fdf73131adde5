"""The arena's synthetic tasks: definitions, constraints, determinism, seed splits."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from hybridzoo.arena.tasks import IGNORE_INDEX, TASKS, make_task, split_seed, task_parameters
from hybridzoo_plugins.arena.copying import SelectiveCopying
from hybridzoo_plugins.arena.mqar import MQAR, power_law_probabilities


def _context(task: MQAR, inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    ctx = task.context_len
    return inputs[:, 0:ctx:2], inputs[:, 1:ctx:2]


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"seq_len": 63}, "seq_len=63"),
        ({"vocab_size": 64, "seq_len": 64}, "vocab_size=64"),
        ({"seq_len": 64, "num_kv_pairs": 17}, "num_kv_pairs=17"),
        ({"num_kv_pairs": 0}, "num_kv_pairs"),
        ({"power_a": 0.0}, "power_a=0.0"),
        ({"power_a": -1.0}, "power_a=-1.0"),
        ({"vocab_size": 2}, "vocab_size"),
        ({"seq_len": 64.0}, "seq_len"),
    ],
)
def test_mqar_constraints_name_the_bad_value(params: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        MQAR(**params)


def test_mqar_largest_valid_pairs_is_accepted() -> None:
    task = MQAR(vocab_size=100, seq_len=64, num_kv_pairs=16)
    batch = task.generate(8, seed=0)
    assert (batch.targets != IGNORE_INDEX).sum(dim=1).tolist() == [16] * 8


@pytest.mark.parametrize("filler", ["random", "zero", "random_no_decoy"])
def test_mqar_definition(filler: str) -> None:
    task = MQAR(vocab_size=128, seq_len=64, num_kv_pairs=8, filler=filler)
    batch = task.generate(64, seed=3)
    assert batch.inputs.shape == batch.targets.shape == (64, 64)
    assert batch.inputs.dtype == batch.targets.dtype == torch.int64
    keys, values = _context(task, batch.inputs)
    half = task.vocab_size // 2
    # keys and values from disjoint halves of the vocabulary, distinct within an example
    assert bool(((keys >= 1) & (keys < half)).all())
    assert bool(((values >= half) & (values < task.vocab_size)).all())
    for row in range(64):
        assert len(set(keys[row].tolist())) == task.num_kv_pairs
        assert len(set(values[row].tolist())) == task.num_kv_pairs
    # loss only on answer positions: one per pair, in the query region, at even offsets
    scored = batch.targets != IGNORE_INDEX
    assert scored.sum(dim=1).tolist() == [task.num_kv_pairs] * 64
    assert not bool(scored[:, : task.context_len].any())
    for row in range(64):
        positions = scored[row].nonzero().flatten()
        assert bool(((positions - task.context_len) % 2 == 0).all())
        lookup = dict(zip(keys[row].tolist(), values[row].tolist(), strict=True))
        for pos in positions.tolist():
            # the input at a scored position is a key; the target is that key's value
            assert batch.targets[row, pos].item() == lookup[batch.inputs[row, pos].item()]
        assert sorted(batch.inputs[row, positions].tolist()) == sorted(lookup)
    fillers = ~scored.clone()
    fillers[:, : task.context_len] = False
    if filler == "zero":
        assert bool((batch.inputs[fillers] == 0).all())
    else:
        assert bool((batch.inputs[fillers] != 0).any())


def _gap_histogram(task: MQAR, num_examples: int) -> torch.Tensor:
    batch = task.generate(num_examples, seed=11)
    positions = (batch.targets != IGNORE_INDEX).nonzero()[:, 1]
    gaps = (positions - task.context_len) // 2
    return torch.bincount(gaps, minlength=task.num_query_slots).double()


def test_mqar_query_gaps_follow_the_power_law() -> None:
    task = MQAR(vocab_size=256, seq_len=128, num_kv_pairs=1, power_a=0.01)
    hist = _gap_histogram(task, 4000)
    freq = hist / hist.sum()
    expected = power_law_probabilities(task.num_query_slots, 0.01)
    # one pair: the gap is one draw from p, so the frequencies match p
    assert torch.allclose(freq, expected, atol=0.025)
    assert freq[0] > 10 * freq[-8:].mean()
    uniform = _gap_histogram(MQAR(vocab_size=256, seq_len=128, num_kv_pairs=1, power_a=1.0), 4000)
    assert uniform.max() / uniform.sum() < 0.04  # 63 slots: about 1/63 each


def test_power_law_probabilities() -> None:
    p = power_law_probabilities(10, 0.01)
    assert torch.isclose(p.sum(), torch.tensor(1.0, dtype=torch.float64))
    assert bool((p[1:] < p[:-1]).all())
    assert torch.allclose(power_law_probabilities(5, 1.0), torch.full((5,), 0.2, dtype=p.dtype))


@pytest.mark.parametrize("task", [MQAR(), SelectiveCopying()], ids=lambda t: t.name)
def test_generation_is_deterministic_for_a_seed(task) -> None:
    a, b, c = task.generate(16, seed=5), task.generate(16, seed=5), task.generate(16, seed=6)
    assert torch.equal(a.inputs, b.inputs) and torch.equal(a.targets, b.targets)
    assert not torch.equal(a.inputs, c.inputs)


def test_generation_does_not_touch_the_global_rng() -> None:
    torch.manual_seed(0)
    before = torch.rand(3)
    torch.manual_seed(0)
    MQAR().generate(4, seed=1)
    assert torch.equal(torch.rand(3), before)


def test_selective_copying_definition() -> None:
    task = SelectiveCopying(vocab_size=10, seq_len=32, num_tokens=6)
    batch = task.generate(32, seed=2)
    ctx = task.context_len
    assert bool((batch.inputs[:, ctx:] == SelectiveCopying.MARKER).all())
    assert bool((batch.targets[:, :ctx] == IGNORE_INDEX).all())
    for row in range(32):
        context = batch.inputs[row, :ctx]
        data = context[context != SelectiveCopying.NOISE]
        assert data.tolist() == batch.targets[row, ctx:].tolist()
        assert bool(((data >= 2) & (data < 10)).all())


@pytest.mark.parametrize(
    ("params", "message"),
    [({"seq_len": 10, "num_tokens": 6}, "num_tokens=6"), ({"vocab_size": 2}, "vocab_size")],
)
def test_selective_copying_constraints(params: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        SelectiveCopying(**params)


@given(st.integers(0, 2**40), st.integers(0, 2**40), st.integers(0, 2**20), st.integers(0, 2**20))
def test_train_and_eval_seeds_never_collide(seed_a: int, seed_b: int, i: int, j: int) -> None:
    train, held_out = split_seed(seed_a, "train", i), split_seed(seed_b, "eval", j)
    assert train != held_out
    assert 0 <= train < 2**32 and 0 <= held_out < 2**32  # the CPU generator keeps 32 bits


def test_split_seeds_differ_across_indices_and_seeds() -> None:
    seeds = {split_seed(s, "train", i) for s in range(8) for i in range(2000)}
    assert len(seeds) == 8 * 2000


def test_train_and_eval_splits_differ() -> None:
    task = MQAR()
    train = task.generate(8, split_seed(0, "train", 0))
    held_out = task.generate(8, split_seed(0, "eval", 0))
    assert not torch.equal(train.inputs, held_out.inputs)


@pytest.mark.parametrize(
    ("args", "message"),
    [((-1, "train", 0), "seed"), ((0, "test", 0), "split"), ((0, "train", -2), "index")],
)
def test_split_seed_rejects_bad_values(args: tuple, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        split_seed(*args)


def test_registry() -> None:
    assert {"mqar", "selective_copying", "noisy_recall", "fuzzy_recall", "compression"} <= set(
        TASKS
    )
    assert make_task("mqar", seq_len=128, num_kv_pairs=8).num_kv_pairs == 8
    assert "power_a" in task_parameters("mqar")
    with pytest.raises(ValueError, match="mqar"):
        make_task("mqr")
    with pytest.raises(ValueError, match="num_pairs"):
        make_task("mqar", num_pairs=3)

"""HybridState operations on whole hybrids: clone, select, cat, to, snapshot/restore, chunked
prefill, and states of another model refused (through HybridModel and HybridLM)."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from lm_helpers import HYBRID, stepped, tiny_lm, tiny_options, tokens

import hybridzoo
from hybridzoo import HybridState, StateError
from hybridzoo.state_tree import cat_trees, clone_tree, select_tree

CLOSE = {"rtol": 1e-9, "atol": 1e-10}


def _model(pattern: str = HYBRID, **extra) -> hybridzoo.HybridModel:
    torch.manual_seed(0)
    options = tiny_options(pattern, **extra)
    model = hybridzoo.build(pattern, embed_dim=5, hidden_size=16, output="sequence", **options)
    return model.double().eval()


def _x(batch: int, length: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(batch, length, 5, generator=torch.Generator().manual_seed(seed)).double()


@pytest.fixture(scope="module")
def hybrid() -> hybridzoo.HybridModel:
    return _model()


@torch.no_grad()
def test_clone_is_deep_and_independent(hybrid) -> None:
    x = _x(2, 8)
    _, state = hybrid.prefill(x[:, :5])
    copy = state.clone()
    before = [t.clone() for t in _tensors(state)]
    from_copy = stepped(hybrid, x[:, 5:], copy)
    assert all(torch.equal(a, b) for a, b in zip(_tensors(state), before, strict=True))
    assert not {t.data_ptr() for t in _tensors(copy)} & {t.data_ptr() for t in _tensors(state)}
    torch.testing.assert_close(from_copy, stepped(hybrid, x[:, 5:], state), rtol=0, atol=0)
    assert copy.positions.tolist() == [8, 8] and state.position == 8


def _tensors(state: HybridState) -> list[torch.Tensor]:
    from hybridzoo.state_tree import tree_tensors

    return [*tree_tensors(state.layers), state.positions]


@torch.no_grad()
@pytest.mark.parametrize("rows", [[2, 0], [1, 1, 0, 2], [-1], torch.tensor([0, 2])])
def test_selected_rows_go_on_as_their_sources(hybrid, rows) -> None:
    x = _x(3, 9)
    y = hybrid(x)
    _, state = hybrid.prefill(x[:, :6])
    picked = state.select(rows)
    index = torch.as_tensor(rows) % 3
    assert picked.batch_size == len(index)
    torch.testing.assert_close(stepped(hybrid, x[index, 6:], picked), y[index, 6:], **CLOSE)


@torch.no_grad()
def test_a_mask_drops_rows(hybrid) -> None:
    x = _x(3, 7)
    y = hybrid(x)
    _, state = hybrid.prefill(x[:, :4])
    kept = state.select(torch.tensor([True, False, True]))
    torch.testing.assert_close(stepped(hybrid, x[[0, 2], 4:], kept), y[[0, 2], 4:], **CLOSE)


@torch.no_grad()
@pytest.mark.parametrize(
    "extra",
    [{}, {"attention_window_size": None}, {"positional_encoding": "sinusoidal"}],
    ids=["window", "full-attention", "sinusoidal"],
)
def test_states_of_different_lengths_concatenate_and_step_as_alone(extra) -> None:
    """Full attention grows its cache to different capacities (zero-padded by cat); the
    sinusoidal encoding and attention read each row's own position."""
    model = _model(**extra)
    lengths = [1, 7, 3]
    xs = [_x(1, n + 4, seed=n) for n in lengths]
    ys = [model(x) for x in xs]
    states = [model.prefill(x[:, :n])[1] for x, n in zip(xs, lengths, strict=True)]
    state = HybridState.cat(states)
    assert state.positions.tolist() == lengths
    with pytest.raises(StateError, match="different positions \\(1 to 7\\)"):
        _ = state.position
    assert "positions=1..7" in repr(state)
    steps = torch.cat([x[:, n:] for x, n in zip(xs, lengths, strict=True)])
    expected = torch.cat([y[:, n:] for y, n in zip(ys, lengths, strict=True)])
    torch.testing.assert_close(stepped(model, steps, state), expected, **CLOSE)
    # the parallel form from a concatenated state too
    states = [model.prefill(x[:, :n])[1] for x, n in zip(xs, lengths, strict=True)]
    out, _ = model.prefill(steps, HybridState.cat(states))
    torch.testing.assert_close(out, expected, **CLOSE)


@torch.no_grad()
def test_to_moves_the_floating_tensors_and_keeps_the_counters(hybrid) -> None:
    x = _x(2, 6)
    _, state = hybrid.prefill(x[:, :4])
    single = state.to(dtype=torch.float32)
    floats = [t for t in _tensors(single) if t.is_floating_point()]
    assert floats and {t.dtype for t in floats} == {torch.float32}
    assert single.positions.dtype == torch.int64
    assert {t.dtype for t in _tensors(single) if not t.is_floating_point()} == {torch.int64}
    model32 = _model().float()
    out = stepped(model32, x[:, 4:].float(), single)
    torch.testing.assert_close(out, hybrid(x)[:, 4:].float(), rtol=1e-4, atol=1e-5)


@torch.no_grad()
@given(
    prefix=st.integers(1, 6),
    drafted=st.lists(st.integers(0, 22), min_size=1, max_size=4),
    accepted=st.integers(0, 4),
    seed=st.integers(0, 3),
)
def test_restoring_a_snapshot_rolls_back_speculated_tokens(prefix, drafted, accepted, seed) -> None:
    """Speculative decoding: step the draft from a snapshot, roll back, step the accepted
    tokens and others: the logits equal a fresh prefill of that path."""
    lm = _shared_lm()
    ids = tokens(2, prefix + 4, seed=seed)
    _, state = lm.prefill(ids[:, :prefix])
    saved = state.snapshot()
    draft = torch.tensor([drafted, drafted[::-1]])
    for t in range(draft.shape[1]):
        lm.step(draft[:, t], state)
    state.restore(saved)
    keep = min(accepted, draft.shape[1])
    path = torch.cat([ids[:, :prefix], draft[:, :keep], ids[:, prefix:]], 1)
    rest = path[:, prefix:]
    fresh, _ = lm.prefill(path)
    torch.testing.assert_close(stepped(lm, rest, state), fresh[:, prefix:], **CLOSE)
    assert state.position == path.shape[1] and saved.position == prefix


_LM: list[hybridzoo.HybridLM] = []


def _shared_lm() -> hybridzoo.HybridLM:
    if not _LM:
        _LM.append(tiny_lm(HYBRID, attention_window_size=None))
    return _LM[0]


@torch.no_grad()
@given(data=st.data())
def test_prefill_in_chunks_of_any_sizes_equals_one_prefill_and_forward(data) -> None:
    lm = _shared_lm()
    length = data.draw(st.integers(2, 12), label="length")
    ids = tokens(2, length, seed=length)
    sizes, left = [], length
    while left:
        sizes.append(data.draw(st.integers(1, left), label="chunk"))
        left -= sizes[-1]
    state, outs = None, []
    for start, size in zip([0, *torch.tensor(sizes).cumsum(0).tolist()], sizes, strict=False):
        out, state = lm.prefill(ids[:, start : start + size], state)
        outs.append(out)
    one, _ = lm.prefill(ids)
    torch.testing.assert_close(torch.cat(outs, 1), one, **CLOSE)
    torch.testing.assert_close(one, lm(ids), **CLOSE)
    assert state.position == length


def _other_models() -> list[tuple[hybridzoo.HybridModel, str]]:
    return [
        (_model("M S D A G R E"), "it holds 7 block states"),
        (_model(HYBRID.replace("G", "M")), "block 5 is 'mamba' in the state's model and 'gla'"),
        (_model(attention_window_size=4), "window_size is 4 in the model that made the state"),
        (_model(mamba2_state_size=8), "state_size is 8"),
        (
            hybridzoo.build(
                HYBRID, embed_dim=5, hidden_size=32, output="sequence", **tiny_options(HYBRID)
            ),
            "it was made for hidden_size 32, this model has hidden_size 16",
        ),
    ]


#: the block a mismatch of options names before the difference
BLOCK = r"(block \d+ \(\w+\): )?"


@torch.no_grad()
def test_a_state_of_another_model_is_refused_naming_the_difference(hybrid) -> None:
    x = _x(1, 3)
    for other, message in _other_models():
        foreign = other.init_state(1)
        for call in (lambda s: hybrid.step(x[:, 0], s), lambda s: hybrid.prefill(x, s)):
            with pytest.raises(StateError, match=message):
                call(foreign)
        with pytest.raises(StateError, match="state 2 differs from state 1: " + BLOCK + message):
            HybridState.cat([hybrid.init_state(1), foreign])
        with pytest.raises(StateError, match="cannot restore this snapshot: " + BLOCK + message):
            hybrid.init_state(1).restore(foreign)
    lm = tiny_lm(HYBRID)
    with pytest.raises(StateError, match="window_size is 4"):
        lm.step(torch.tensor([1]), _model(attention_window_size=4).init_state(1))
    with pytest.raises(StateError, match="expected a HybridState"):
        hybrid.prefill(x, "abc")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ([3], "row 3 is out of range for a state of 3 rows"),
        ([-4], "row -4 is out of range"),
        ([], "at least one row"),
        ([0.5], "a sequence of row indices"),
        ("ab", "a sequence of row indices"),
        (torch.tensor([True, False]), "boolean row mask must have shape \\[3\\]"),
        (torch.tensor([False, False, False]), "at least one row"),
    ],
)
def test_bad_row_selections_are_state_errors(hybrid, rows, message) -> None:
    with pytest.raises(StateError, match=message):
        hybrid.init_state(3).select(rows)


def test_restore_needs_the_same_batch_and_a_state(hybrid) -> None:
    state = hybrid.init_state(2)
    with pytest.raises(StateError, match="it has 3 rows, this state 2"):
        state.restore(hybrid.init_state(3))
    with pytest.raises(StateError, match="restore takes a HybridState"):
        state.restore([])  # type: ignore[arg-type]
    with pytest.raises(StateError, match="takes a list of HybridStates"):
        HybridState.cat([state, 3])  # type: ignore[list-item]


def test_the_tree_operations_refuse_what_is_not_a_batch_first_state() -> None:
    with pytest.raises(StateError, match="found a dict"):
        clone_tree(({"a": 1},))
    with pytest.raises(StateError, match="shape \\[\\] is not batch-first"):
        select_tree((torch.zeros(()),), torch.tensor([0]))
    with pytest.raises(StateError, match="dim 0 must be the batch of 2"):
        select_tree((torch.zeros(3, 1),), torch.tensor([0]), 2)
    with pytest.raises(StateError, match="differ in structure"):
        cat_trees([(torch.zeros(1, 2),), (torch.zeros(1, 2), torch.zeros(1, 2))])
    with pytest.raises(StateError, match="different dtypes or devices"):
        cat_trees([(torch.zeros(1, 2),), (torch.zeros(1, 2, dtype=torch.float64),)])
    padded = cat_trees([(torch.ones(1, 2, 3),), (torch.ones(2, 4, 3),)])[0]
    assert padded.shape == (3, 4, 3) and padded[0, 2:].abs().sum() == 0

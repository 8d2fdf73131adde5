"""Sliding-window attention: fast body vs the L×L reference, decoding state, counts, causality."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from hybridzoo.nn import FeedForward
from hybridzoo_plugins.attention.formulas import (
    attention_param_count,
    param_count,
    state_size,
)
from hybridzoo_plugins.attention.layer import SlidingWindowAttention, make_attention_bodies
from hybridzoo_plugins.attention.reference import reference_forward

TOL = {"atol": 1e-10, "rtol": 1e-10}  # float64
HIDDEN = 10
WINDOWS = [1, 2, 3, 5, 16, None]


def make_layer(
    window: int | None,
    *,
    heads: int = 2,
    head_dim: int = 4,
    qk_norm: bool = True,
    bias: bool = True,
    seed: int = 0,
) -> SlidingWindowAttention:
    """A float64 layer with every parameter random (so LayerNorm weights/biases matter too)."""
    torch.manual_seed(seed)
    layer = SlidingWindowAttention(
        HIDDEN, num_heads=heads, head_dim=head_dim, window_size=window, qk_norm=qk_norm, bias=bias
    ).double()
    with torch.no_grad():
        for p in layer.parameters():
            p.normal_(0.0, 0.7)
    return layer.eval()


def inputs(batch: int, length: int, seed: int = 1) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(batch, length, HIDDEN, generator=gen, dtype=torch.float64)


# ---------------------------------------------------------------- forward vs reference
@pytest.mark.parametrize("window", WINDOWS)
@pytest.mark.parametrize("length", [1, 4, 5, 11, 33])
def test_forward_matches_reference(window: int | None, length: int) -> None:
    # covers window > L, window = L-ish, window = 1, several blocks with a ragged last one
    layer = make_layer(window)
    x = inputs(2, length)
    torch.testing.assert_close(layer(x), reference_forward(layer, x), **TOL)


@given(
    length=st.integers(1, 40),
    window=st.one_of(st.none(), st.integers(1, 45)),
    heads=st.integers(1, 3),
    head_dim=st.sampled_from([2, 4, 6]),
    qk_norm=st.booleans(),
    bias=st.booleans(),
)
def test_forward_matches_reference_random(
    length: int, window: int | None, heads: int, head_dim: int, qk_norm: bool, bias: bool
) -> None:
    layer = make_layer(window, heads=heads, head_dim=head_dim, qk_norm=qk_norm, bias=bias)
    x = inputs(2, length, seed=length)
    torch.testing.assert_close(layer(x), reference_forward(layer, x), **TOL)


def test_window_at_least_length_is_full_causal() -> None:
    x = inputs(2, 9)
    full = make_layer(None)
    wide = make_layer(9)
    wide.load_state_dict(full.state_dict())
    torch.testing.assert_close(wide(x), full(x), **TOL)


def test_window_one_attends_to_itself_only() -> None:
    # softmax over a single key is 1: the output is o_proj(v_t), whatever q and k are
    layer = make_layer(1)
    x = inputs(2, 7)
    v = layer.v_proj(x)
    torch.testing.assert_close(layer(x), layer.o_proj(v), **TOL)


def test_float32_close_to_float64_reference() -> None:
    layer = make_layer(3)
    x = inputs(2, 13)
    expected = reference_forward(layer, x)
    out32 = layer.float()(x.float())
    assert out32.dtype == torch.float32
    torch.testing.assert_close(out32.double(), expected, atol=1e-4, rtol=1e-4)


# ---------------------------------------------------------------- decoding state
@pytest.mark.parametrize("window", WINDOWS)
def test_step_matches_forward(window: int | None) -> None:
    layer = make_layer(window)
    layer.initial_cache_len = 3  # window=None: the cache must grow several times
    x = inputs(2, 20)
    expected = layer(x)
    state = layer.init_state(2)
    outs = []
    for t in range(x.shape[1]):
        y_t, state = layer.step(x[:, t], state)
        outs.append(y_t)
    torch.testing.assert_close(torch.stack(outs, 1), expected, **TOL)
    assert int(state[2]) == 20


@pytest.mark.parametrize("window", WINDOWS)
@pytest.mark.parametrize("prefix", [1, 4, 7, 17])
def test_prefill_then_steps_matches_forward(window: int | None, prefix: int) -> None:
    layer = make_layer(window)
    layer.initial_cache_len = 2
    x = inputs(2, 19)
    expected = layer(x)
    y, state = layer.prefill(x[:, :prefix])
    outs = [y]
    for t in range(prefix, x.shape[1]):
        y_t, state = layer.step(x[:, t], state)
        outs.append(y_t.unsqueeze(1))
    torch.testing.assert_close(torch.cat(outs, 1), expected, **TOL)


@given(
    chunks=st.lists(st.integers(1, 12), min_size=1, max_size=6),
    window=st.one_of(st.none(), st.integers(1, 10)),
    first_by_steps=st.integers(0, 5),
)
def test_prefill_from_state_matches_forward(
    chunks: list[int], window: int | None, first_by_steps: int
) -> None:
    # steps, then prefills of arbitrary sizes (smaller and larger than the window) from that state
    layer = make_layer(window)
    layer.initial_cache_len = 2
    length = first_by_steps + sum(chunks)
    x = inputs(1, length, seed=length)
    expected = layer(x)
    state = layer.init_state(1)
    outs = []
    for t in range(first_by_steps):
        y_t, state = layer.step(x[:, t], state)
        outs.append(y_t.unsqueeze(1))
    start = first_by_steps
    for n in chunks:
        y, state = layer.prefill(x[:, start : start + n], state)
        outs.append(y)
        start += n
    torch.testing.assert_close(torch.cat(outs, 1), expected, **TOL)
    assert int(state[2]) == length


@pytest.mark.parametrize("window", [4, None])
def test_prefill_none_equals_prefill_fresh_state(window: int | None) -> None:
    layer = make_layer(window)
    x = inputs(2, 9)
    y_none, s_none = layer.prefill(x)
    y_fresh, s_fresh = layer.prefill(x, layer.init_state(2))
    torch.testing.assert_close(y_none, y_fresh, **TOL)
    torch.testing.assert_close(y_none, layer(x), **TOL)
    for a, b in zip(s_none, s_fresh, strict=True):
        torch.testing.assert_close(a, b, atol=0, rtol=0)


@pytest.mark.parametrize("window", [3, None])
def test_prefill_leaves_given_state_unchanged(window: int | None) -> None:
    layer = make_layer(window)
    x = inputs(2, 8)
    _, state = layer.prefill(x[:, :5])
    saved = [s.clone() for s in state]
    layer.prefill(x[:, 5:], state)
    for a, b in zip(state, saved, strict=True):
        assert torch.equal(a, b)


def test_step_updates_ring_buffer_in_place() -> None:
    layer = make_layer(4)
    state = layer.init_state(2)
    pointers = [s.data_ptr() for s in state]
    x = inputs(2, 9)
    for t in range(9):
        _, new_state = layer.step(x[:, t], state)
        assert all(a is b for a, b in zip(new_state, state, strict=True))
        state = new_state
    assert [s.data_ptr() for s in state] == pointers
    assert state[0].shape == (2, 2, 4, 4)  # [B, heads, window, head_dim]


def test_init_state_shapes_dtype_and_size() -> None:
    layer = make_layer(5, heads=3, head_dim=6)
    k, v, pos = layer.init_state(4)
    assert k.shape == v.shape == (4, 3, 5, 6)
    assert k.dtype == torch.float64 and pos.dtype == torch.long and pos.shape == ()
    per_row = (k.numel() + v.numel()) // 4
    assert per_row == state_size(HIDDEN, num_heads=3, head_dim=6, window_size=5)
    assert state_size(HIDDEN, num_heads=3, head_dim=6, window_size=None, seq_len=7) == 2 * 3 * 7 * 6
    with pytest.raises(ValueError, match="seq_len"):
        state_size(HIDDEN, window_size=None)


# ---------------------------------------------------------------- structure and contracts
@pytest.mark.parametrize("window", [2, 7, None])
def test_causal(window: int | None) -> None:
    layer = make_layer(window)
    x = inputs(2, 15)
    t = 8
    x2 = x.clone()
    x2[:, t + 1 :] = torch.randn_like(x2[:, t + 1 :])
    torch.testing.assert_close(layer(x2)[:, : t + 1], layer(x)[:, : t + 1], atol=0, rtol=0)
    assert not torch.allclose(layer(x2)[:, t + 1 :], layer(x)[:, t + 1 :])


def test_batch_rows_independent() -> None:
    layer = make_layer(3)
    x = inputs(3, 10)
    full = layer(x)
    for b in range(3):
        torch.testing.assert_close(layer(x[b : b + 1]), full[b : b + 1], **TOL)


@pytest.mark.parametrize("window", [3, None])
def test_gradients_reach_every_parameter(window: int | None) -> None:
    layer = make_layer(window)
    layer(inputs(2, 8)).square().sum().backward()
    for name, p in layer.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


class _LargestTensor(TorchDispatchMode):
    """Records the largest number of elements of any tensor an op produces."""

    def __init__(self) -> None:
        super().__init__()
        self.largest = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
        out = func(*args, **(kwargs or {}))
        for t in tree_flatten(out)[0]:
            if isinstance(t, torch.Tensor):
                self.largest = max(self.largest, t.numel())
        return out


def test_banded_forward_never_builds_length_squared_scores() -> None:
    # 1 row, 1 head: the full score matrix would have L² = 262144 elements; the blocked one has
    # about L·2·window = 8192 (+ padding), and q/k/v are L·head_dim.
    length, window = 512, 8
    layer = SlidingWindowAttention(4, num_heads=1, head_dim=4, window_size=window)
    x = torch.randn(1, length, 4)
    with torch.no_grad(), _LargestTensor() as probe:
        layer(x)
    assert probe.largest <= 3 * length * window
    assert probe.largest < length * length // 16


# ---------------------------------------------------------------- counts, factory, errors
@pytest.mark.parametrize(
    ("heads", "head_dim", "qk_norm", "bias"),
    [(1, 2, False, False), (2, 4, True, False), (3, 6, True, True), (4, 64, False, True)],
)
def test_param_count(heads: int, head_dim: int, qk_norm: bool, bias: bool) -> None:
    layer = SlidingWindowAttention(
        HIDDEN, num_heads=heads, head_dim=head_dim, qk_norm=qk_norm, bias=bias
    )
    numel = sum(p.numel() for p in layer.parameters())
    kwargs = {"num_heads": heads, "head_dim": head_dim, "qk_norm": qk_norm, "bias": bias}
    assert attention_param_count(HIDDEN, **kwargs) == numel


@pytest.mark.parametrize("expand", [1, 4])
def test_make_attention_bodies_and_layer_param_count(expand: int) -> None:
    kwargs = {"num_heads": 2, "head_dim": 8, "window_size": 5, "ffn_expand_factor": expand}
    bodies = make_attention_bodies(HIDDEN, **kwargs)
    assert isinstance(bodies[0], SlidingWindowAttention) and isinstance(bodies[1], FeedForward)
    assert bodies[0].window_size == 5
    numel = sum(p.numel() for body in bodies for p in body.parameters())
    assert param_count(HIDDEN, **kwargs) == numel


def test_default_param_count() -> None:
    # H=256, 4 heads × 64: 4·256·256 projections + 4·64 QK-norm, FFN 2·4·256² + 4·256 + 256
    assert attention_param_count(256) == 4 * 256 * 256 + 256
    assert param_count(256) == 4 * 256 * 256 + 256 + 2 * 4 * 256 * 256 + 1024 + 256


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"window_size": 0}, ValueError, "window_size"),
        ({"window_size": 2.5}, TypeError, "window_size"),
        ({"window_size": True}, TypeError, "window_size"),
        ({"head_dim": 5}, ValueError, "even"),
        ({"num_heads": 0}, ValueError, "num_heads"),
        ({"rope_base": -1.0}, ValueError, "rope_base"),
        ({"rope_base": "big"}, TypeError, "rope_base"),
        ({"qk_norm": "yes"}, TypeError, "qk_norm"),
    ],
)
def test_bad_arguments(kwargs: dict, error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        SlidingWindowAttention(HIDDEN, **kwargs)

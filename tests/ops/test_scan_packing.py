"""Packing (``seq_idx``) and containment of the Mamba-1 kernels, both backends.

- packed == separate: a row of several documents gives the outputs, final state/window and
  gradients of separate calls on each document (float64, tight), documents of length 1 included;
- containment: a NaN/inf planted at position s leaves every output before s bitwise unchanged,
  and, when packed, every output of the other documents too.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from scan_cases import (
    CONV_DRAWS,
    NAMES,
    PER_TIME,
    RTOL64,
    assert_close,
    backend_fixture,
    conv_inputs,
    conv_run,
    internal_scan,
    make_inputs,
    scan_run,
)

from hybridzoo.errors import ShapeError
from hybridzoo.ops.selective_scan import causal_conv1d, selective_scan
from hybridzoo.ops.selective_scan.naive import naive_causal_conv1d, naive_selective_scan

backend = backend_fixture()


@st.composite
def packings(draw: st.DrawFn, max_batch: int = 3, max_length: int = 20) -> torch.Tensor:
    """``seq_idx [B, T]``: random boundaries (many documents of length 1), numbers that start
    anywhere and jump by 1 to 3."""
    batch = draw(st.integers(1, max_batch))
    length = draw(st.integers(1, max_length))
    rows = []
    for _ in range(batch):
        jump = st.sampled_from([0, 0, 1, 3])
        jumps = draw(st.lists(jump, min_size=length - 1, max_size=length - 1))
        rows.append(list(itertools.accumulate([draw(st.integers(0, 5)), *jumps])))
    return torch.tensor(rows, dtype=draw(st.sampled_from([torch.int64, torch.int32])))


def documents(row: torch.Tensor) -> list[tuple[int, int]]:
    """The ``[start, end)`` of every document of one row of ``seq_idx``."""
    cuts = [0, *(t for t in range(1, len(row)) if row[t] != row[t - 1]), len(row)]
    return list(itertools.pairwise(cuts))


def scan_separately(fn: Callable, seq_idx: torch.Tensor) -> Callable:
    """``fn`` (signature of ``selective_scan``) called on every document of every row alone; the
    initial state goes to each row's first document; the final state is the last document's."""

    def separate(*args, initial_state, output_final_state, **kwargs):
        *tensors, softplus = args
        named = dict(zip(NAMES[:8], tensors, strict=True))
        ys, hs = [], []
        for b, row in enumerate(seq_idx):
            parts = []
            for i, (s, e) in enumerate(documents(row)):
                doc = {
                    k: (v[b : b + 1, s:e] if k in PER_TIME else v) if v is not None else None
                    for k, v in named.items()
                }
                h0 = initial_state[b : b + 1] if initial_state is not None and i == 0 else None
                y, h = fn(*doc.values(), softplus, initial_state=h0, output_final_state=True)
                parts.append(y)
            ys.append(torch.cat(parts, 1))
            hs.append(h)
        return torch.cat(ys), torch.cat(hs)

    return separate


def conv_separately(fn: Callable, seq_idx: torch.Tensor) -> Callable:
    """As :func:`scan_separately`, for ``causal_conv1d``'s signature (window for state)."""

    def separate(x, weight, bias, *, initial_window, output_final_window, **kwargs):
        outs, finals = [], []
        for b, row in enumerate(seq_idx):
            parts = []
            for i, (s, e) in enumerate(documents(row)):
                win = initial_window[b : b + 1] if initial_window is not None and i == 0 else None
                out, final = fn(
                    x[b : b + 1, s:e], weight, bias, initial_window=win,
                    output_final_window=True, **kwargs,
                )  # fmt: skip
                parts.append(out)
            outs.append(torch.cat(parts, 1))
            finals.append(final)
        return torch.cat(outs), torch.cat(finals)

    return separate


@given(
    seq=packings(),
    channels=st.integers(1, 20),
    state=st.integers(1, 4),
    optional=st.tuples(st.booleans(), st.booleans(), st.booleans(), st.booleans()),
    softplus=st.booleans(),
    chunk=st.integers(1, 7),
    seed=st.integers(0, 2**16),
)
def test_scan_packed_is_separate(backend, seq, channels, state, optional, softplus, chunk, seed):
    batch, length = seq.shape
    inputs = make_inputs(seed, batch, length, channels, state, optional=optional)
    ref = scan_run(scan_separately(naive_selective_scan, seq), inputs, softplus)
    # the reference's own packing, the backend at a small internal chunk (boundaries inside and
    # on chunk edges), and the public entry point
    assert_close(scan_run(naive_selective_scan, inputs, softplus, seq_idx=seq), ref, RTOL64)
    packed = scan_run(internal_scan(backend, chunk), inputs, softplus, seq_idx=seq.long())
    assert_close(packed, ref, RTOL64)
    public = scan_run(selective_scan, inputs, softplus, seq_idx=seq, backend=backend)
    assert_close(public, ref, RTOL64)


@given(seq=packings(max_length=90), **CONV_DRAWS)  # > 64 steps: several compiled time chunks
def test_conv_packed_is_separate(backend, seq, channels, kernel, use_bias, use_window, silu, seed):
    batch, length = seq.shape
    inputs = conv_inputs(seed, batch, length, channels, kernel, use_bias, use_window)
    ref = conv_run(inputs, silu, fn=conv_separately(naive_causal_conv1d, seq))
    assert_close(conv_run(inputs, silu, fn=naive_causal_conv1d, seq_idx=seq), ref, RTOL64)
    assert_close(conv_run(inputs, silu, backend=backend, seq_idx=seq), ref, RTOL64)


POISONS = [float("nan"), float("inf"), float("-inf")]
SEQ = torch.tensor([[0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 3, 3], [4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4]])


def later_documents(seq: torch.Tensor | None, s: int) -> torch.Tensor:
    """``[B, T]`` bool: positions of a later document than position s's (all False unpacked)."""
    if seq is None:
        return torch.zeros(2, 12, dtype=torch.bool)
    return seq > seq[:, s : s + 1]


def assert_contained(
    clean: torch.Tensor, bad: torch.Tensor, s: int, seq: torch.Tensor | None, value: float
) -> None:
    assert torch.equal(bad[:, :s], clean[:, :s]), f"an output before position {s} changed"
    later = later_documents(seq, s)
    assert torch.equal(bad[later], clean[later]), "an output of a later document changed"
    if value != value:  # a NaN always reaches the output at s (an inf may not: softplus(-inf) = 0)
        assert not torch.isfinite(bad[:, s]).all(), "the poison did not reach the outputs"


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("packed", [False, True])
def test_scan_containment(backend, dtype, packed):
    x = make_inputs(3, 2, 12, 19, 3, dtype=dtype)
    seq = SEQ if packed else None
    fn = internal_scan(backend, 4)  # the torch backend's chunks cross the poison

    def scan(inputs):
        with torch.no_grad():
            return fn(*(inputs[k] for k in NAMES[:8]), True, initial_state=inputs[NAMES[8]],
                      output_final_state=True, seq_idx=seq)  # fmt: skip

    clean, h_clean = scan(x)
    for name, s, value in itertools.product(PER_TIME, range(12), POISONS):
        bad_inputs = dict(x, **{name: x[name].clone()})
        bad_inputs[name][:, s] = value
        bad, h_bad = scan(bad_inputs)
        assert_contained(clean, bad, s, seq, value)
        if packed and s < 10:  # the poisoned document is not row 0's last: its final state holds
            assert torch.equal(h_bad[0], h_clean[0])


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("packed", [False, True])
def test_conv_containment(backend, dtype, packed):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 12, 19, generator=g).to(dtype)
    w, b = torch.randn(19, 4, generator=g).to(dtype), torch.randn(19, generator=g).to(dtype)
    win = torch.randn(2, 19, 3, generator=g).to(dtype)
    seq = SEQ if packed else None

    def conv(inp):
        with torch.no_grad():
            return causal_conv1d(inp, w, b, initial_window=win, seq_idx=seq, backend=backend)[0]

    clean = conv(x)
    for s, value in itertools.product(range(12), POISONS):
        bad = x.clone()
        bad[:, s] = value
        assert_contained(clean, conv(bad), s, seq, value)


def test_seq_idx_errors():
    x = make_inputs(0, 2, 5, 3, 2)
    args = [x[k] for k in NAMES[:5]]
    good = torch.zeros(2, 5, dtype=torch.int64)
    with pytest.raises(ShapeError, match=r"seq_idx must have shape \[B, T\] = \(2, 5\)"):
        selective_scan(*args, seq_idx=good[:, :4])
    with pytest.raises(ShapeError, match="integer tensor"):
        selective_scan(*args, seq_idx=good.double())
    falling = torch.tensor([[0, 0, 1, 1, 2], [0, 1, 2, 1, 3]])
    with pytest.raises(ShapeError, match=r"non-decreasing.*row 1 goes from 2 to 1 at t=3"):
        selective_scan(*args, seq_idx=falling)
    with pytest.raises(ShapeError, match="non-decreasing"):
        causal_conv1d(x["u"], torch.randn(3, 4, dtype=torch.float64), seq_idx=falling)

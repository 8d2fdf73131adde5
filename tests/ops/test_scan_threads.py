"""The compiled kernels' multi-threaded paths against the torch backend.

The suite pins one thread (tests/conftest.py), and calls with little work run on one thread
anyway; here every call has at least twice the work at which the kernels start splitting it over
threads (asked from the extension), and runs under 2, 3 and 4 threads: batch 1 and 3 (so that
rows are and are not split into channel groups), inner widths 80 and 136 (partial SIMD blocks,
groups of unequal size), float32 and float64, packed and not.  Outputs, final states and every
gradient must match the torch backend, which has no threads of its own in these paths.
"""

from __future__ import annotations

import pytest
import torch
from scan_cases import (
    NAMES,
    RTOL32,
    RTOL64,
    assert_close,
    conv_inputs,
    conv_run,
    make_inputs,
    num_threads,
    require_compiled,
    scan_run,
)

from hybridzoo.ops.selective_scan import causal_conv1d, selective_scan, selective_state_update
from hybridzoo.ops.selective_scan.fused import load_extension

THREADS = (2, 3, 4)
CASES = [(batch, width) for batch in (1, 3) for width in (80, 136)]
DTYPES = [torch.float32, torch.float64]
STATE = 4
CONV = 4


@pytest.fixture(scope="module")
def min_work() -> int:
    require_compiled()
    return int(load_extension().min_parallel_work())


def length_for(min_work: int, per_step: int) -> int:
    """An odd length with at least twice ``min_work`` for a call of ``per_step`` work a step."""
    return 2 * min_work // per_step + 3


def packing(batch: int, length: int) -> torch.Tensor:
    """Documents of lengths 1, 2, 37, 1, ... (cut every few dozen steps), different per row."""
    starts = torch.zeros(batch, length, dtype=torch.int64)
    for b in range(batch):
        for t in (1, 3, 40 + b, 41 + b, *range(97 + 13 * b, length, 71)):
            starts[b, t] = 1
    return starts.cumsum(1)


def tolerance(dtype: torch.dtype) -> float:
    return RTOL32 if dtype == torch.float32 else RTOL64


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(("batch", "width"), CASES)
def test_scan_threads(min_work, batch, width, dtype):
    # work of one call on one row: blocks of channels x steps x state (see scan_fwd.cpp)
    length = length_for(min_work, width * STATE)
    inputs = make_inputs(batch * width, batch, length, width, STATE)
    seq = packing(batch, length) if batch == 3 else None
    ref = scan_run(selective_scan, inputs, True, backend="torch", seq_idx=seq)
    low = {k: None if v is None else v.to(dtype) for k, v in inputs.items()}
    for n in THREADS:
        with num_threads(n):
            got = scan_run(selective_scan, low, True, backend="compiled", seq_idx=seq)
        assert_close(got, ref, tolerance(dtype))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(("batch", "width"), CASES)
def test_conv_threads(min_work, batch, width, dtype):
    length = length_for(min_work, width * CONV)
    inputs = conv_inputs(width, batch, length, width, CONV)
    seq = packing(batch, length) if batch == 1 else None
    ref = conv_run(inputs, True, backend="torch", seq_idx=seq)
    low = {k: v.to(dtype) for k, v in inputs.items()}
    for n in THREADS:
        with num_threads(n):
            got = conv_run(low, True, fn=causal_conv1d, backend="compiled", seq_idx=seq)
        assert_close(got, ref, tolerance(dtype))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(("batch", "width"), CASES)
def test_step_threads(min_work, batch, width, dtype):
    state = 2 * min_work // (batch * width) + 1  # rows x state elements of work
    x = make_inputs(width, batch, 1, width, state, dtype=dtype)
    step = {k: (v[:, 0] if k in ("u", "delta", "B", "C", "z") else v) for k, v in x.items()}
    args = [step[k] for k in NAMES[:8]]
    h_ref = x["initial_state"].clone()
    y_ref = selective_state_update(h_ref, *args, True, backend="torch")
    for n in THREADS:
        h = x["initial_state"].clone()
        with num_threads(n):
            y = selective_state_update(h, *args, True, backend="compiled")
        assert_close({"y": y, "h": h}, {"y": y_ref, "h": h_ref}, tolerance(dtype))

"""Tests of the retention plugin: hybridzoo's conformance kit, and the maths against the paper."""

from __future__ import annotations

import importlib.metadata as md
import math

import pytest
import torch
from hybridzoo.testing import parametrize_with_checks

from hybridzoo_retention import SPEC, RetentionOptions
from hybridzoo_retention.formulas import head_log_decays
from hybridzoo_retention.layer import MultiScaleRetention, chunk_retention
from hybridzoo_retention.reference import retention_reference

#: small heads and chunks that do not divide the kit's sequence length (11)
SMALL = {"num_heads": 2, "head_dim": 4, "value_factor": 1, "chunk_size": 3, "ffn_expand_factor": 1}


@parametrize_with_checks(SPEC)
def test_conformance(check):
    check()


@parametrize_with_checks(SPEC, options=SMALL)
def test_conformance_small_chunks(check):
    check()


def body(**options) -> MultiScaleRetention:
    torch.manual_seed(0)
    return SPEC.factory(RetentionOptions(**options), 12)[0].double()


def test_decays_are_the_papers() -> None:
    gammas = [math.exp(g) for g in head_log_decays(6)]
    assert gammas == pytest.approx([1 - 2 ** (-5 - h) for h in range(6)], rel=0, abs=1e-15)
    # heads whose gamma rounds to 1 in float32 still decay
    assert all(g < 0 for g in head_log_decays(40))


@pytest.mark.parametrize("chunk_size", [1, 2, 5, 64])
@pytest.mark.parametrize("length", [1, 7, 40])
def test_chunkwise_equals_the_recurrent_reference(chunk_size: int, length: int) -> None:
    layer = body(num_heads=3, head_dim=4, chunk_size=chunk_size)
    x = torch.randn(2, length, 12, dtype=torch.float64)
    torch.testing.assert_close(layer(x), retention_reference(layer, x), rtol=1e-10, atol=1e-12)


def test_chunk_retention_equals_the_parallel_form() -> None:
    """``(Q Kᵀ ⊙ D) V`` with the whole ``L × L`` decay matrix, plus an initial state."""
    torch.manual_seed(1)
    b, h, length, d_k, d_v = 2, 3, 19, 4, 5
    q, k = (torch.randn(b, h, length, d_k, dtype=torch.float64) for _ in range(2))
    v = torch.randn(b, h, length, d_v, dtype=torch.float64)
    s0 = torch.randn(b, h, d_k, d_v, dtype=torch.float64)
    log_decay = torch.tensor(head_log_decays(h), dtype=torch.float64)
    n = torch.arange(length, dtype=torch.float64)
    gap = n[:, None] - n[None, :]
    decay = torch.where(gap >= 0, torch.exp(gap * log_decay[:, None, None]), 0.0)  # [h, L, L]
    expected = (q @ k.transpose(-1, -2) * decay) @ v
    expected += (q * torch.exp((n[:, None] + 1) * log_decay[:, None, None])) @ s0
    final = (
        torch.exp(length * log_decay)[:, None, None] * s0
        + (k * torch.exp((length - 1 - n)[:, None] * log_decay[:, None, None])).transpose(-1, -2)
        @ v
    )
    for chunk_size in (1, 4, 19, 64):
        out, state = chunk_retention(q, k, v, log_decay, chunk_size=chunk_size, initial_state=s0)
        torch.testing.assert_close(out, expected, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(state, final, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("chunk_size", [1, 2, 5, 64])
@pytest.mark.parametrize("value", [math.nan, math.inf])
def test_a_non_finite_input_never_reaches_an_earlier_output(chunk_size: int, value: float) -> None:
    """A NaN or inf in q, k or v at position s leaves every output before s bitwise unchanged,
    and the outputs from s on are not all finite."""
    torch.manual_seed(2)
    q, k, v = (torch.randn(2, 3, 13, 4, dtype=torch.float64) for _ in range(3))
    log_decay = torch.tensor(head_log_decays(3), dtype=torch.float64)
    clean, _ = chunk_retention(q, k, v, log_decay, chunk_size=chunk_size)
    for s in (1, 6, 12):
        for which in range(3):
            planted = [q.clone(), k.clone(), v.clone()]
            planted[which][:, :, s] = value
            out, _ = chunk_retention(*planted, log_decay, chunk_size=chunk_size)
            assert torch.equal(out[:, :, :s], clean[:, :, :s]), (which, s)
            assert not torch.isfinite(out[:, :, s:]).all(), (which, s)


def test_long_sequence_in_float32_stays_close_to_float64() -> None:
    layer = body(num_heads=8, head_dim=8, chunk_size=64)
    x = torch.randn(1, 700, 12, dtype=torch.float64)
    expected = layer(x)
    actual = layer.float()(x.float())
    torch.testing.assert_close(actual.double(), expected, rtol=1e-3, atol=1e-4)


def test_step_state_is_constant_size_and_updated_in_place() -> None:
    layer = body(num_heads=2, head_dim=4)
    state = layer.init_state(3)
    s, pos = state
    for _ in range(5):
        _, state = layer.step(torch.randn(3, 12, dtype=torch.float64), state)
    assert state[0] is s and state[1] is pos
    assert s.shape == (3, 2, 4, 8) and int(pos) == 5


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="head_dim"):
        RetentionOptions(head_dim=5)
    with pytest.raises(TypeError, match="integer"):
        RetentionOptions(num_heads=1.5)
    with pytest.raises(ValueError, match="chunk_size"):
        MultiScaleRetention(8, chunk_size=0)


def test_installed_with_its_entry_point() -> None:
    try:
        dist = md.distribution("hybridzoo-retention")
    except md.PackageNotFoundError:
        pytest.skip("hybridzoo-retention is not installed (pip install -e examples/retention)")
    (ep,) = [e for e in dist.entry_points if e.group == "hybridzoo.layers"]
    assert (ep.name, ep.value) == ("retention", "hybridzoo_retention")

"""RWKV-6 bodies: fast path == time-step reference, step/prefill == forward, counts, gradients."""

from __future__ import annotations

import pytest
import torch

from hybridzoo_plugins.rwkv import RWKVOptions, formulas
from hybridzoo_plugins.rwkv.layer import RWKV6ChannelMix, RWKV6TimeMix, make_bodies
from hybridzoo_plugins.rwkv.reference import channel_mix_reference, time_mix_reference

F64 = torch.float64
# small configurations: (hidden_size, options)
CONFIGS = [
    (16, {"head_size": 8, "mix_rank": 3, "decay_rank": 5}),
    (24, {"head_size": 12, "mix_rank": 2, "decay_rank": 4, "expand": 2.0, "multiple_of": 8}),
    (32, {"head_size": 32, "chunk_size": 4, "head_size_divisor": 1}),
]


def _bodies(hidden: int, opts: dict, dtype: torch.dtype = F64, seed: int = 0) -> list:
    torch.manual_seed(seed)
    return make_bodies(RWKVOptions(**opts), hidden, dtype=dtype)


@torch.no_grad()
def _scramble(module: torch.nn.Module, seed: int = 1) -> None:
    """Redraw every parameter at O(1) scale so that each path (LoRA, bonus, norm) matters."""
    gen = torch.Generator().manual_seed(seed)
    for name, p in module.named_parameters():
        noise = torch.randn(p.shape, generator=gen, dtype=p.dtype)
        if name.endswith(".weight") and p.ndim == 2:  # nn.Linear [out, in]
            noise /= p.shape[1] ** 0.5  # keep every matrix near unit gain
        elif name.startswith(("time_maa_w", "time_decay_w")):  # used as x @ W: [.., in, out]
            noise /= p.shape[-2] ** 0.5
        p.copy_(noise)
    if isinstance(module, RWKV6TimeMix):  # decays spread over (0, 1), some close to 1
        p = module.time_decay
        p.copy_(torch.linspace(-4.0, 1.0, p.numel(), dtype=p.dtype).view_as(p))


def _randn(*shape: int, dtype: torch.dtype = F64, seed: int = 2) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


@pytest.mark.parametrize(("hidden", "opts"), CONFIGS)
def test_forward_matches_reference(hidden: int, opts: dict) -> None:
    tm, cm = _bodies(hidden, opts)
    _scramble(tm)
    _scramble(cm)
    x = _randn(2, 11, hidden)
    with torch.no_grad():
        torch.testing.assert_close(tm(x), time_mix_reference(tm, x), rtol=1e-9, atol=1e-10)
        torch.testing.assert_close(cm(x), channel_mix_reference(cm, x), rtol=1e-9, atol=1e-10)


@pytest.mark.parametrize(("hidden", "opts"), CONFIGS[:2])
def test_prefill_from_state_matches_reference(hidden: int, opts: dict) -> None:
    tm, cm = _bodies(hidden, opts)
    _scramble(tm)
    _scramble(cm)
    x = _randn(3, 6, hidden)
    shift = _randn(3, hidden, seed=3)
    wkv = _randn(3, tm.num_heads, tm.head_size, tm.head_size, seed=4)
    with torch.no_grad():
        y, (s1, s2) = tm.prefill(x, (shift, wkv))
        y_ref, (r1, r2) = time_mix_reference(tm, x, (shift, wkv), output_final_state=True)
        torch.testing.assert_close(y, y_ref, rtol=1e-9, atol=1e-10)
        torch.testing.assert_close(s1, r1)
        torch.testing.assert_close(s2, r2, rtol=1e-9, atol=1e-10)
        yc, (c1,) = cm.prefill(x, (shift,))
        yc_ref, (q1,) = channel_mix_reference(cm, x, (shift,), output_final_state=True)
        torch.testing.assert_close(yc, yc_ref, rtol=1e-9, atol=1e-10)
        torch.testing.assert_close(c1, q1)


@pytest.mark.parametrize(("hidden", "opts"), CONFIGS)
def test_step_matches_forward(hidden: int, opts: dict) -> None:
    for body in _bodies(hidden, opts):
        _scramble(body)
        x = _randn(2, 9, hidden)
        with torch.no_grad():
            y = body(x)
            state = body.init_state(2)
            pointers = [s.data_ptr() for s in state]
            steps = []
            for t in range(x.shape[1]):
                y_t, state = body.step(x[:, t], state)
                steps.append(y_t)
        torch.testing.assert_close(torch.stack(steps, 1), y, rtol=1e-9, atol=1e-10)
        # the state is updated in place: same tensors, no new large allocations
        assert [s.data_ptr() for s in state] == pointers


@pytest.mark.parametrize("split", [1, 5, 8])
def test_prefill_then_steps_match_forward(split: int) -> None:
    hidden, opts = CONFIGS[0]
    for body in _bodies(hidden, opts):
        _scramble(body)
        x = _randn(2, 8, hidden)
        with torch.no_grad():
            y = body(x)
            y_pre, state = body.prefill(x[:, :split])
            outs = [y_pre]
            for t in range(split, x.shape[1]):
                y_t, state = body.step(x[:, t], state)
                outs.append(y_t.unsqueeze(1))
        torch.testing.assert_close(torch.cat(outs, 1), y, rtol=1e-9, atol=1e-10)


def test_prefill_chunks_match_forward() -> None:
    hidden, opts = CONFIGS[1]
    for body in _bodies(hidden, opts):
        _scramble(body)
        x = _randn(1, 10, hidden)
        with torch.no_grad():
            y1, state = body.prefill(x[:, :4], None)
            y2, state = body.prefill(x[:, 4:], state)
            torch.testing.assert_close(torch.cat([y1, y2], 1), body(x), rtol=1e-9, atol=1e-10)


def test_prefill_does_not_alias_input() -> None:
    """Stepping after a prefill must not write into the caller's input tensor."""
    hidden, opts = CONFIGS[0]
    for body in _bodies(hidden, opts):
        x = _randn(2, 3, hidden)
        keep = x.clone()
        with torch.no_grad():
            _, state = body.prefill(x)
            body.step(_randn(2, hidden, seed=9), state)
        torch.testing.assert_close(x, keep, rtol=0, atol=0)


def test_causal() -> None:
    hidden, opts = CONFIGS[0]
    for body in _bodies(hidden, opts):
        _scramble(body)
        x = _randn(2, 8, hidden)
        x2 = x.clone()
        x2[:, 5:] += 1.0
        with torch.no_grad():
            torch.testing.assert_close(body(x)[:, :5], body(x2)[:, :5], rtol=0, atol=1e-12)
            assert not torch.allclose(body(x)[:, 5:], body(x2)[:, 5:])


def test_float32_close_to_float64() -> None:
    hidden, opts = CONFIGS[0]
    b64 = _bodies(hidden, opts, dtype=F64)
    b32 = _bodies(hidden, opts, dtype=torch.float32)
    x = _randn(2, 7, hidden)
    for m64, m32 in zip(b64, b32, strict=True):
        m32.load_state_dict({k: v.float() for k, v in m64.state_dict().items()})
        with torch.no_grad():
            y32 = m32(x.float())
            assert y32.dtype == torch.float32
            torch.testing.assert_close(y32.double(), m64(x), rtol=1e-4, atol=1e-5)
        state = m32.init_state(2)
        assert all(s.dtype == torch.float32 for s in state)


@pytest.mark.parametrize(("hidden", "opts"), [*CONFIGS, (128, {}), (256, {"head_size": 128})])
def test_param_count_is_exact(hidden: int, opts: dict) -> None:
    tm, cm = _bodies(hidden, opts, dtype=torch.float32)
    n_tm = sum(p.numel() for p in tm.parameters())
    n_cm = sum(p.numel() for p in cm.parameters())
    options = RWKVOptions(**opts)
    assert formulas.time_mix_param_count(options, hidden) == n_tm
    assert formulas.channel_mix_param_count(options, hidden) == n_cm
    assert formulas.param_count(options, hidden) == n_tm + n_cm
    n_state = sum(t.numel() for body in (tm, cm) for t in body.init_state(1))
    assert formulas.state_size(options, hidden) == n_state


def test_ffn_size_follows_rwkv6() -> None:
    # RWKV-LM: dim_ffn = int(3.5 * n_embd) // 32 * 32
    assert formulas.ffn_size(768) == 2688
    assert formulas.ffn_size(2048) == 7168
    assert formulas.ffn_size(100) == 320
    assert formulas.ffn_size(4) == 32  # never below multiple_of
    assert RWKV6ChannelMix(96).ffn_size == 320


def test_gradients_reach_every_parameter() -> None:
    """With the default initialisation (no scrambling)."""
    tm, cm = make_bodies(RWKVOptions(head_size=16, mix_rank=4, decay_rank=4), 32)
    x = torch.randn(2, 5, 32, generator=torch.Generator().manual_seed(0))
    loss = (cm(tm(x) + x).square()).sum()
    loss.backward()
    for body in (tm, cm):
        for name, p in body.named_parameters():
            assert p.grad is not None, name
            assert p.grad.abs().sum() > 0, name


def test_bad_head_size_names_both() -> None:
    with pytest.raises(ValueError, match=r"hidden_size=100.*head_size=64"):
        RWKV6TimeMix(100)
    with pytest.raises(ValueError, match=r"hidden_size=100.*head_size=64"):
        make_bodies(RWKVOptions(head_size=64), 100)
    with pytest.raises(ValueError, match=r"hidden_size=100.*head_size=64"):
        formulas.param_count(RWKVOptions(head_size=64), 100)
    with pytest.raises(ValueError, match="head_size"):
        RWKV6TimeMix(64, head_size=0)


@pytest.mark.parametrize(
    ("make", "kwargs", "error", "match"),
    [
        (RWKVOptions, {"head_sise": 8}, TypeError, "head_sise"),
        (lambda **kw: RWKV6TimeMix(64, **kw), {"head_sise": 8}, TypeError, "head_sise"),
        (lambda **kw: RWKV6TimeMix(64, **kw), {"mix_rank": 0}, ValueError, "mix_rank"),
        (lambda **kw: RWKV6TimeMix(64, **kw), {"chunk_size": 48}, ValueError, "chunk_size must"),
        (lambda **kw: RWKV6TimeMix(64, **kw), {"head_size_divisor": 0}, ValueError, "size_divisor"),
        (lambda **kw: RWKV6TimeMix(64, **kw), {"init_depth": 1.5}, ValueError, "init_depth"),
        (lambda **kw: RWKV6ChannelMix(64, **kw), {"expand": 0}, ValueError, "expand"),
    ],
)
def test_bad_options(make, kwargs: dict, error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        make(**kwargs)


def test_parameter_names_follow_rwkv_lm() -> None:
    tm, cm = make_bodies(RWKVOptions(head_size=16), 64)
    assert {n for n, _ in tm.named_parameters()} == {
        *(f"time_maa_{s}" for s in "xwkvrg"),
        "time_maa_w1",
        "time_maa_w2",
        "time_decay",
        "time_decay_w1",
        "time_decay_w2",
        "time_faaaa",
        *(f"{n}.weight" for n in ("receptance", "key", "value", "gate", "output", "ln_x")),
        "ln_x.bias",
    }
    assert tm.time_maa_w1.shape == (64, 5 * 32)
    assert tm.time_maa_w2.shape == (5, 32, 64)
    assert tm.time_faaaa.shape == (4, 16)
    assert tm.ln_x.eps == pytest.approx(64e-5)
    assert {n for n, _ in cm.named_parameters()} == {
        "time_maa_k",
        "time_maa_r",
        "key.weight",
        "receptance.weight",
        "value.weight",
    }

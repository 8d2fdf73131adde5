"""Attention: the fast body against the L×L reference (sliding-window and full, grouped-query,
with and without RoPE, with a short convolution), the decoding state (per-row positions, growing
full caches, kv heads only), memory without L×L tensors, counts, bf16, the conformance kit, and
transformers' Mistral attention with the same weights."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from layer_helpers import bf16_errors, kit_params, randomize
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

import hybridzoo
from hybridzoo import PackingError
from hybridzoo.nn import FeedForward
from hybridzoo_plugins.attention import SPEC, AttentionOptions, kernels
from hybridzoo_plugins.attention.formulas import attention_param_count
from hybridzoo_plugins.attention.layer import SlidingWindowAttention
from hybridzoo_plugins.attention.reference import reference_forward

TOL = {"atol": 1e-10, "rtol": 1e-10}  # float64
HIDDEN = 10
WINDOWS = [1, 2, 3, 5, 16, None]

KIT_VARIANTS = {
    "gqa": {"num_heads": 4, "num_kv_heads": 2, "head_dim": 4, "window_size": 3},
    "mqa-full": {"num_heads": 2, "num_kv_heads": 1, "head_dim": 4, "window_size": None},
    "no-rope": {"head_dim": 3, "rope_base": None, "qk_norm": False, "window_size": 4},
    "conv-paper": {"num_heads": 1, "head_dim": 8, "conv_size": 3, "ffn_expand_factor": 0},
}


def make_layer(window: int | None = 3, *, seed: int = 0, **kwargs) -> SlidingWindowAttention:
    """A float64 layer with every parameter random (LayerNorm and conv weights included)."""
    kwargs = {"num_heads": 2, "head_dim": 4, "bias": True, **kwargs}
    layer = SlidingWindowAttention(HIDDEN, window_size=window, **kwargs).double()
    return randomize(layer, std=0.7, seed=seed).eval()


def inputs(batch: int, length: int, seed: int = 1) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(batch, length, HIDDEN, generator=gen, dtype=torch.float64)


def run_steps(layer: SlidingWindowAttention, x: torch.Tensor, state) -> tuple[torch.Tensor, tuple]:
    outs = []
    for t in range(x.shape[1]):
        y_t, state = layer.step(x[:, t], state)
        outs.append(y_t)
    return (torch.stack(outs, 1) if outs else x[:, :0]), state


@kit_params("attention", KIT_VARIANTS)
def test_conformance(check) -> None:
    check()


# ---------------------------------------------------------------- forward vs reference
@pytest.mark.parametrize("window", WINDOWS)
@pytest.mark.parametrize("length", [1, 5, 11, 33])
def test_forward_matches_reference(window: int | None, length: int) -> None:
    # window > L, window = 1, several blocks with a ragged last one; 4 query heads on 2 kv heads
    layer = make_layer(window, num_heads=4, num_kv_heads=2)
    x = inputs(2, length)
    torch.testing.assert_close(layer(x), reference_forward(layer, x), **TOL)


@given(
    length=st.integers(1, 30),
    window=st.one_of(st.none(), st.integers(1, 32)),
    kv_heads=st.sampled_from([1, 3]),
    head_dim=st.sampled_from([2, 4]),
    rope=st.sampled_from([10000.0, 7.0, None]),
    qk_norm=st.booleans(),
    conv=st.sampled_from([0, 1, 3]),
)
def test_forward_matches_reference_random(
    length: int, window: int | None, kv_heads: int, head_dim: int, rope, qk_norm: bool, conv: int
) -> None:
    layer = make_layer(
        window,
        num_heads=3,
        num_kv_heads=kv_heads,
        head_dim=head_dim,
        rope_base=rope,
        qk_norm=qk_norm,
        conv_size=conv,
    )
    x = inputs(2, length, seed=length)
    torch.testing.assert_close(layer(x), reference_forward(layer, x), **TOL)


def test_window_at_least_length_is_full_causal() -> None:
    x = inputs(2, 9)
    full, wide = make_layer(None), make_layer(9)
    wide.load_state_dict(full.state_dict())
    torch.testing.assert_close(wide(x), full(x), **TOL)


def test_without_rope_attention_is_blind_to_order() -> None:
    # no rotary, full attention: the last output depends on the set of earlier tokens only
    layer = make_layer(None, rope_base=None, head_dim=3)
    x = inputs(1, 8)
    shuffled = torch.cat((x[:, torch.randperm(7)], x[:, 7:]), 1)
    torch.testing.assert_close(layer(shuffled)[:, -1], layer(x)[:, -1], **TOL)
    with_rope = make_layer(None)
    assert not torch.allclose(with_rope(shuffled)[:, -1], with_rope(x)[:, -1])


def test_float32_close_to_float64_reference() -> None:
    layer = make_layer(3, num_kv_heads=1)
    x = inputs(2, 13)
    expected = reference_forward(layer, x)
    out32 = layer.float()(x.float())
    assert out32.dtype == torch.float32
    torch.testing.assert_close(out32.double(), expected, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("window", [64, None])
@pytest.mark.parametrize("rope", [10000.0, None])
def test_bf16_close_to_float64_at_length_600(window: int | None, rope) -> None:
    # bf16 angles would be off by more than a rotation step past position 256 (40% errors)
    layer = SlidingWindowAttention(
        32, num_heads=4, num_kv_heads=2, head_dim=8, window_size=window, rope_base=rope
    )
    errors = bf16_errors(randomize(layer, std=0.3), reference_forward, length=600, batch=1)
    assert errors.max() < 5e-2, errors.max()
    assert errors[:, 256:].mean() < 2e-2


# ---------------------------------------------------------------- containment and packing
@pytest.mark.parametrize("window", [2, 5, None])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_non_finite_input_never_reaches_earlier_outputs(window, dtype, value) -> None:
    # SDPA scores masked keys too: a NaN there would leak into earlier outputs (NaN + -inf)
    layer = make_layer(window, num_heads=4, num_kv_heads=2, conv_size=2).to(dtype)
    x = inputs(2, 13).to(dtype)
    _, state = layer.prefill(x[:, :4])
    with torch.no_grad():
        y, y_pre = layer(x), layer.prefill(x[:, 4:], state)[0]
        for s in (1, 6, 12):
            x2 = x.clone()
            x2[:, s] = value
            y2 = layer(x2)
            assert torch.equal(y2[:, :s], y[:, :s]), s
            assert torch.isnan(y2[:, s]).all()  # the query that sees it is NaN, as it should
            if s > 4:
                y2_pre = layer.prefill(x2[:, 4:], state)[0]
                assert torch.equal(y2_pre[:, : s - 4], y_pre[:, : s - 4]), s


def _documents(lengths: list[int], seed: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    """One packed row of documents of ``lengths`` and its ``seq_idx``."""
    x = inputs(1, sum(lengths), seed=seed)
    seq_idx = torch.repeat_interleave(torch.arange(len(lengths)), torch.tensor(lengths))
    return x, seq_idx.view(1, -1) + 5


@pytest.mark.parametrize("window", [1, 3, 16, None])
def test_packed_documents_equal_separate_forwards(window: int | None) -> None:
    layer = make_layer(window, num_heads=4, num_kv_heads=2)
    lengths = [3, 1, 7, 5]
    x, seq_idx = _documents(lengths)
    x1 = x.clone().requires_grad_(True)
    packed = layer(x1, seq_idx=seq_idx)
    weight = torch.randn_like(packed)
    (packed * weight).sum().backward()
    grads = {n: p.grad.clone() for n, p in layer.named_parameters()}
    layer.zero_grad()
    x2 = x.clone().requires_grad_(True)
    separate = torch.cat([layer(part) for part in x2.split(lengths, 1)], 1)
    (separate * weight).sum().backward()
    torch.testing.assert_close(packed, separate, **TOL)
    torch.testing.assert_close(x1.grad, x2.grad, **TOL)
    for name, p in layer.named_parameters():
        torch.testing.assert_close(grads[name], p.grad, **TOL, msg=name)


def test_packed_rows_and_blocks(monkeypatch) -> None:
    # two rows with different boundaries; full attention in several query blocks
    monkeypatch.setattr(kernels, "MASK_BUDGET", 40)
    layer = make_layer(None, num_kv_heads=1)
    x = inputs(2, 12)
    seq_idx = torch.tensor([[0] * 5 + [1] * 7, [0] * 11 + [2]])
    packed = layer(x, seq_idx=seq_idx)
    for b, cuts in ((0, [5, 7]), (1, [11, 1])):
        parts = x[b : b + 1].split(cuts, 1)
        torch.testing.assert_close(
            packed[b : b + 1], torch.cat([layer(p) for p in parts], 1), **TOL
        )


@pytest.mark.parametrize(
    ("seq_idx", "match"),
    [
        (torch.zeros(2, 5), "integer tensor"),
        (torch.zeros(2, 4, dtype=torch.long), r"\[B, T\] = \(2, 5\)"),
        (torch.tensor([[0, 1, 1, 0, 2]] * 2), "non-decreasing"),
    ],
)
def test_bad_seq_idx(seq_idx, match) -> None:
    with pytest.raises(PackingError, match=match):
        make_layer(3)(inputs(2, 5), seq_idx=seq_idx)


@pytest.mark.parametrize("window", [2, None])
def test_packed_documents_with_a_short_convolution(window: int | None) -> None:
    # the convolution reads zeros before each document, as each document alone
    layer = make_layer(window, conv_size=3)
    lengths = [4, 1, 2, 6]
    x, seq_idx = _documents(lengths)
    separate = torch.cat([layer(part) for part in x.split(lengths, 1)], 1)
    torch.testing.assert_close(layer(x, seq_idx=seq_idx), separate, **TOL)


# ---------------------------------------------------------------- decoding state
CACHE_CASES = [
    pytest.param({"window": w, "num_kv_heads": kv}, id=f"w{w}-kv{kv}")
    for w in (1, 3, 16, None)
    for kv in (1, 2)
]


@pytest.mark.parametrize("case", CACHE_CASES)
@pytest.mark.parametrize("conv", [0, 3])
def test_step_matches_forward(case: dict, conv: int) -> None:
    layer = make_layer(
        case["window"], num_heads=4, num_kv_heads=case["num_kv_heads"], conv_size=conv
    )
    layer.initial_cache_len = 3  # window=None: the cache must grow several times
    x = inputs(2, 20)
    stepped, state = run_steps(layer, x, layer.init_state(2))
    torch.testing.assert_close(stepped, layer(x), **TOL)
    assert state[2].tolist() == [20, 20]
    assert state[0].shape[1] == case["num_kv_heads"]  # only the kv heads are cached


@pytest.mark.parametrize("window", WINDOWS)
@pytest.mark.parametrize("prefix", [1, 4, 17])
def test_prefill_then_steps_matches_forward(window: int | None, prefix: int) -> None:
    layer = make_layer(window, num_heads=4, num_kv_heads=2, conv_size=2)
    layer.initial_cache_len = 2
    x = inputs(2, 19)
    y, state = layer.prefill(x[:, :prefix])
    stepped, _ = run_steps(layer, x[:, prefix:], state)
    torch.testing.assert_close(torch.cat((y, stepped), 1), layer(x), **TOL)


@given(
    chunks=st.lists(st.integers(1, 12), min_size=1, max_size=5),
    window=st.one_of(st.none(), st.integers(1, 10)),
    first_by_steps=st.integers(0, 5),
)
def test_prefill_from_state_matches_forward(
    chunks: list[int], window: int | None, first_by_steps: int
) -> None:
    # steps, then prefills of any sizes (smaller and larger than the window) from that state
    layer = make_layer(window, num_kv_heads=1, conv_size=2)
    layer.initial_cache_len = 2
    length = first_by_steps + sum(chunks)
    x = inputs(1, length, seed=length)
    outs, state = run_steps(layer, x[:, :first_by_steps], layer.init_state(1))
    outs = [outs]
    start = first_by_steps
    for n in chunks:
        y, state = layer.prefill(x[:, start : start + n], state)
        outs.append(y)
        start += n
    torch.testing.assert_close(torch.cat(outs, 1), layer(x), **TOL)
    assert state[2].tolist() == [length]


def _pad_cat(states: list[tuple]) -> tuple:
    """Concatenate states along the batch, zero-padding caches to the larger capacity."""
    capacity = max(s[0].shape[2] for s in states)
    padded = [
        tuple(
            torch.nn.functional.pad(t, (0, 0, 0, capacity - t.shape[2])) if i < 2 else t
            for i, t in enumerate(s)
        )
        for s in states
    ]
    return tuple(torch.cat(parts) for parts in zip(*padded, strict=True))


@pytest.mark.parametrize("window", [3, 8, None])
def test_rows_of_different_lengths_share_a_batch(window: int | None) -> None:
    # each prompt prefilled alone, the states batched: stepping and prefilling together equals
    # continuing each row alone (the positions are per row)
    layer = make_layer(window, num_heads=4, num_kv_heads=2, conv_size=2)
    layer.initial_cache_len = 4
    lengths = [2, 9, 5]
    prompts = [inputs(1, n, seed=n) for n in lengths]
    rest = inputs(3, 6, seed=99)
    states = [layer.prefill(p)[1] for p in prompts]
    batched = _pad_cat(states)
    assert batched[2].tolist() == lengths
    y_steps, after = run_steps(layer, rest[:, :2], batched)
    y_pre, _ = layer.prefill(rest[:, 2:], after)
    together = torch.cat((y_steps, y_pre), 1)
    for b, prompt in enumerate(prompts):
        alone = layer(torch.cat((prompt, rest[b : b + 1]), 1))[:, lengths[b] :]
        torch.testing.assert_close(together[b : b + 1], alone, **TOL)


@pytest.mark.parametrize("window", [4, None])
def test_prefill_leaves_given_state_unchanged(window: int | None) -> None:
    layer = make_layer(window, conv_size=3)
    x = inputs(2, 8)
    _, state = layer.prefill(x[:, :5])
    saved = [s.clone() for s in state]
    layer.prefill(x[:, 5:], state)
    for a, b in zip(state, saved, strict=True):
        assert torch.equal(a, b)


@pytest.mark.parametrize("conv", [2, 3])
def test_state_never_aliases_the_input(conv: int) -> None:
    # the convolution kernel can return a view of its input as the final window; stepping on
    # from the state must not write into the caller's tensor
    layer = SlidingWindowAttention(1, num_heads=1, head_dim=2, conv_size=conv).double()
    x = torch.randn(1, 4, 1, dtype=torch.float64)
    saved = x.clone()
    _, state = layer.prefill(x)
    layer.step(torch.randn(1, 1, dtype=torch.float64), state)
    assert torch.equal(x, saved)


def test_step_updates_ring_buffer_in_place() -> None:
    layer = make_layer(4, conv_size=2)
    state = layer.init_state(2)
    pointers = [s.data_ptr() for s in state]
    x = inputs(2, 9)
    for t in range(9):
        _, new_state = layer.step(x[:, t], state)
        assert all(a is b for a, b in zip(new_state, state, strict=True))
    assert [s.data_ptr() for s in state] == pointers


def test_init_state_shapes_and_state_size() -> None:
    options = AttentionOptions(num_heads=6, num_kv_heads=2, head_dim=6, window_size=5, conv_size=3)
    layer = SPEC.factory(options, HIDDEN)[0]
    k, v, pos, conv = layer.init_state(4)
    assert k.shape == v.shape == (4, 2, 5, 6)  # kv heads only
    assert pos.shape == (4,) and pos.dtype == torch.long
    assert conv.shape == (4, HIDDEN, 2)
    per_row = sum(t.numel() for t in (k, v, pos, conv)) // 4
    assert per_row == SPEC.state_size(options, HIDDEN) == 2 * 2 * 5 * 6 + 1 + 2 * HIDDEN
    assert SPEC.state_size(AttentionOptions(window_size=None), HIDDEN) is None


# ---------------------------------------------------------------- memory: no L×L tensor
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


def _largest(fn) -> int:
    with torch.no_grad(), _LargestTensor() as probe:
        fn()
    return probe.largest


def test_banded_forward_never_builds_length_squared_scores() -> None:
    length, window = 512, 8
    layer = SlidingWindowAttention(4, num_heads=2, num_kv_heads=1, head_dim=4, window_size=window)
    x = torch.randn(1, length, 4)
    assert _largest(lambda: layer(x)) <= 4 * length * window
    _, state = layer.prefill(x[:, :100])
    assert _largest(lambda: layer.prefill(x, state)) <= 4 * length * window


def test_full_attention_never_builds_length_squared_tensors(monkeypatch) -> None:
    # L = 2048 queries (L² = 4M) after a 1024-token cache (L·(P+L) = 6M): forward and backward
    # run in SDPA's fused kernel, a prefill after a cache in blocks within the mask budget
    monkeypatch.setattr(kernels, "MASK_BUDGET", 2**16)
    layer = SlidingWindowAttention(4, num_heads=2, num_kv_heads=1, head_dim=4, window_size=None)
    x = torch.randn(1, 2048, 4)
    assert _largest(lambda: layer(x)) <= 2048 * 16
    _, state = layer.prefill(x[:, :1024])
    assert _largest(lambda: layer.prefill(x, state)) <= 2**16
    assert _largest(lambda: layer.step(x[:, 0], state)) <= 2048 * 4 * 2
    x.requires_grad_(True)
    with _LargestTensor() as probe:
        layer(x).sum().backward()
    assert probe.largest <= 2048 * 16


# ---------------------------------------------------------------- counts, options, errors
@pytest.mark.parametrize(
    "options",
    [
        {"num_heads": 1, "head_dim": 2, "qk_norm": False},
        {"num_heads": 4, "num_kv_heads": 2, "head_dim": 4, "bias": True},
        {"num_heads": 3, "num_kv_heads": 1, "head_dim": 5, "rope_base": None, "conv_size": 4},
        {"num_heads": 2, "head_dim": 6, "bias": True, "ffn_expand_factor": 0},
        {"num_heads": 2, "head_dim": 6, "ffn_activation": "swiglu", "ffn_expand_factor": 3},
    ],
)
def test_param_count_exact(options: dict) -> None:
    record = AttentionOptions(**options)
    bodies = SPEC.factory(record, HIDDEN)
    assert len(bodies) == SPEC.num_sub_blocks(record) == (2 if record.ffn_expand_factor else 1)
    assert SPEC.param_count(record, HIDDEN) == sum(
        p.numel() for b in bodies for p in b.parameters()
    )
    assert attention_param_count(record, HIDDEN) == sum(p.numel() for p in bodies[0].parameters())


def test_default_param_count() -> None:
    # H=256, 4 heads × 64: 4·256·256 projections + 4·64 QK-norm, FFN 2·4·256² + 4·256 + 256
    record = AttentionOptions()
    assert attention_param_count(record, 256) == 4 * 256 * 256 + 256
    assert SPEC.param_count(record, 256) == 4 * 256 * 256 + 256 + 2 * 4 * 256 * 256 + 1024 + 256


def test_paper_mode_has_no_ffn_sub_block() -> None:
    model = hybridzoo.build(
        "A A", embed_dim=8, hidden_size=8, attention_ffn_expand_factor=0, attention_head_dim=4
    )
    assert all(len(block.sub_blocks) == 1 for block in model.blocks)
    assert model.param_count() == hybridzoo.param_count(
        "A A", embed_dim=8, hidden_size=8, attention_ffn_expand_factor=0, attention_head_dim=4
    )
    with_ffn = SPEC.factory(AttentionOptions(ffn_activation="relu2"), 8)
    assert isinstance(with_ffn[1], FeedForward) and with_ffn[1].activation == "relu2"


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"attention_num_kv_heads": 3}, "attention_num_kv_heads.*must divide"),
        ({"attention_head_dim": 5}, "even with rotary"),
        ({"attention_rope_base": 0.0}, "attention_rope_base"),
        ({"attention_conv_size": -1}, "attention_conv_size"),
        ({"attention_window_size": 1}, "attention_window_size"),
        ({"attention_ffn_activation": "gelu2"}, "attention_ffn_activation"),
    ],
)
def test_bad_options(options: dict, match: str) -> None:
    with pytest.raises(hybridzoo.OptionError, match=match):
        hybridzoo.build("A", embed_dim=8, hidden_size=8, **options)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"window_size": 0}, ValueError, "window_size"),
        ({"window_size": 2.5}, TypeError, "window_size"),
        ({"head_dim": 5}, ValueError, "head_dim"),
        ({"num_kv_heads": 3}, ValueError, "divide"),
        ({"rope_base": -1.0}, ValueError, "rope_base"),
        ({"qk_norm": "yes"}, TypeError, "qk_norm"),
        ({"conv_size": -2}, ValueError, "conv_size"),
    ],
)
def test_bad_arguments(kwargs: dict, error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        SlidingWindowAttention(HIDDEN, **kwargs)


def test_scale_options() -> None:
    scaled = SPEC.scale_options(AttentionOptions(num_heads=2), 64, seq_len=128)
    assert (scaled.head_dim, scaled.window_size) == (32, 128)
    full = SPEC.scale_options(AttentionOptions(window_size=None), 64, seq_len=128)
    assert full.window_size is None


# ---------------------------------------------------------------- transformers' Mistral
def _mistral(window: int | None, heads: int = 4, kv_heads: int = 2, head_dim: int = 4):
    tf = pytest.importorskip("transformers")
    from transformers.models.mistral.modeling_mistral import MistralAttention

    config = tf.MistralConfig(
        hidden_size=HIDDEN,
        num_attention_heads=heads,
        num_key_value_heads=kv_heads,
        head_dim=head_dim,
        sliding_window=window,
        rope_theta=500.0,
    )
    config._attn_implementation = "sdpa"  # (eager takes its softmax in float32)
    theirs = randomize(MistralAttention(config, layer_idx=0).double(), seed=5)
    ours = SlidingWindowAttention(
        HIDDEN,
        num_heads=heads,
        num_kv_heads=kv_heads,
        head_dim=head_dim,
        window_size=window,
        qk_norm=False,
        rope_base=500.0,
    ).double()
    ours.load_state_dict(theirs.state_dict())
    return ours, theirs


def _tables(positions: torch.Tensor, head_dim: int, base: float):
    inv = base ** (-torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim)
    angles = positions.double()[..., None] * inv
    angles = torch.cat((angles, angles), -1)
    return angles.cos(), angles.sin()


def _mask(queries: torch.Tensor, keys: int, window: int | None) -> torch.Tensor:
    """Additive ``[1, 1, q, keys]`` mask: causal, and within the window."""
    k = torch.arange(keys)[None, :]
    q = queries[:, None]
    allowed = (k <= q) & ((k > q - window) if window else True)
    return torch.zeros(allowed.shape, dtype=torch.float64).masked_fill(~allowed, -torch.inf)[
        None, None
    ]


@pytest.mark.parametrize("window", [3, None])
def test_equals_mistral_attention_forward_and_backward(window: int | None) -> None:
    ours, theirs = _mistral(window)
    x = inputs(2, 11)
    x1, x2 = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    positions = torch.arange(11)
    y1 = ours(x1)
    y2, _ = theirs(x2, _tables(positions[None], 4, 500.0), _mask(positions, 11, window))
    torch.testing.assert_close(y1, y2, **TOL)
    weight = torch.randn_like(y1)
    (y1 * weight).sum().backward()
    (y2 * weight).sum().backward()
    torch.testing.assert_close(x1.grad, x2.grad, **TOL)
    theirs_params = dict(theirs.named_parameters())
    for name, p in ours.named_parameters():
        torch.testing.assert_close(p.grad, theirs_params[name].grad, **TOL, msg=name)


@pytest.mark.parametrize("window", [3, None])
def test_step_equals_mistral_cache_decode(window: int | None) -> None:
    from transformers import DynamicCache

    ours, theirs = _mistral(window, heads=2, kv_heads=1)
    x = inputs(2, 9)
    prompt = 4
    cache = DynamicCache()
    positions = torch.arange(prompt)
    with torch.no_grad():
        y_prompt, _ = theirs(
            x[:, :prompt],
            _tables(positions[None], 4, 500.0),
            _mask(positions, prompt, window),
            cache=cache,
        )
        y_ours, state = ours.prefill(x[:, :prompt])
        torch.testing.assert_close(y_ours, y_prompt, **TOL)
        for t in range(prompt, 9):
            pos = torch.tensor([t])
            y_theirs, _ = theirs(
                x[:, t : t + 1],
                _tables(pos[None], 4, 500.0),
                _mask(pos, t + 1, window),
                cache=cache,
            )
            y_t, state = ours.step(x[:, t], state)
            torch.testing.assert_close(y_t, y_theirs[:, 0], **TOL)
    assert cache.layers[0].keys.shape[1] == 1 and state[0].shape[1] == 1  # kv heads cached


def test_equals_nemotron_h_attention() -> None:
    # Nemotron-H's attention: grouped-query, no rotary, no QK-norm, no bias, full causal
    tf = pytest.importorskip("transformers")
    from transformers.models.nemotron_h.modeling_nemotron_h import NemotronHAttention

    config = tf.NemotronHConfig(
        hidden_size=HIDDEN, num_attention_heads=4, num_key_value_heads=1, head_dim=4
    )
    config._attn_implementation = "sdpa"
    theirs = randomize(NemotronHAttention(config, layer_idx=0).double(), seed=6)
    record = AttentionOptions(
        num_heads=4, num_kv_heads=1, head_dim=4, window_size=None, qk_norm=False, rope_base=None
    )
    ours = SPEC.factory(record, HIDDEN)[0].double()
    ours.load_state_dict(theirs.state_dict())
    x = inputs(2, 12)
    x1, x2 = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    y1, y2 = ours(x1), theirs(x2, attention_mask=None)[0]
    torch.testing.assert_close(y1, y2, **TOL)
    y1.square().sum().backward()
    y2.square().sum().backward()
    torch.testing.assert_close(x1.grad, x2.grad, **TOL)

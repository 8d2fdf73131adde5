"""Gated DeltaNet: the fast body against its time-step reference, step and prefill, exact counts,
errors, and the same weights in transformers' Qwen3NextGatedDeltaNet (fused projections mapped
both ways)."""

from __future__ import annotations

import pytest
import recurrent_layer_checks as rc
import torch
from hypothesis import given
from hypothesis import strategies as st

import hybridzoo
from hybridzoo_plugins.gated_deltanet import SPEC, GatedDeltaNetOptions, formulas
from hybridzoo_plugins.gated_deltanet.convert import (
    from_qwen3_next,
    layer_kwargs_from_config,
    qwen3_next_config_kwargs,
    state_dict_from_qwen3_next,
    state_dict_to_qwen3_next,
)
from hybridzoo_plugins.gated_deltanet.layer import GatedDeltaNet, make_bodies
from hybridzoo_plugins.gated_deltanet.reference import reference_scan

HIDDEN = 8


def layer(seed: int = 0, dtype: torch.dtype = rc.F64, **kwargs) -> GatedDeltaNet:
    """A layer with every parameter redrawn (the norm weight matters too)."""
    kwargs = {"num_heads": 2, "head_dim": 3, **kwargs}
    torch.manual_seed(seed)
    return rc.scramble(GatedDeltaNet(HIDDEN, dtype=dtype, **kwargs), seed=seed + 1).eval()


@given(
    num_heads=st.integers(1, 2),
    v_heads_per_head=st.integers(1, 2),
    head_dim=st.integers(1, 4),
    expand_v=st.sampled_from([1, 2, 0.5]),
    conv_size=st.integers(1, 4),
    chunk_size=st.sampled_from([1, 2, 4, 64]),
    length=st.integers(1, 20),
    seed=st.integers(0, 100),
)
def test_forward_and_states_match_reference(
    num_heads: int,
    v_heads_per_head: int,
    head_dim: int,
    expand_v: float,
    conv_size: int,
    chunk_size: int,
    length: int,
    seed: int,
) -> None:
    if (head_dim * expand_v) % 1:
        head_dim *= 2
    body = layer(
        seed,
        num_heads=num_heads,
        num_v_heads=num_heads * v_heads_per_head,
        head_dim=head_dim,
        expand_v=expand_v,
        conv_size=conv_size,
        chunk_size=chunk_size,
    )
    x = rc.randn(2, length, HIDDEN, seed=seed)
    rc.check_against_reference(body, reference_scan, x)
    state = tuple(rc.randn(*t.shape, seed=seed + i + 1) for i, t in enumerate(body.init_state(2)))
    rc.check_against_reference(body, reference_scan, x, state)


@pytest.mark.parametrize("cut", [1, 5, 9])
def test_step_and_prefill_agree_with_forward(cut: int) -> None:
    rc.check_modes_agree(
        layer(num_v_heads=4, expand_v=2, conv_size=3), rc.randn(3, 12, HIDDEN), cut
    )


def test_step_sees_parameter_updates() -> None:
    first, second = (layer(seed=0), layer(seed=3))
    rc.check_step_sees_parameter_updates(first, second, rc.randn(2, 6, HIDDEN))


@given(cuts=st.lists(st.integers(1, 12), max_size=4), seed=st.integers(0, 100))
def test_packed_documents_equal_separate_prefills(cuts: list[int], seed: int) -> None:
    """Random boundaries (documents of length 1 included) in row 0, one document in row 1."""
    body = layer(num_v_heads=4, conv_size=3, chunk_size=4)
    seq_idx = torch.zeros(2, 13, dtype=torch.int64)
    for cut in cuts:
        seq_idx[0, cut:] += 1
    state = tuple(rc.randn(*t.shape, seed=seed + i) for i, t in enumerate(body.init_state(2)))
    rc.check_packing(body, reference_scan, rc.randn(2, 13, HIDDEN, seed=seed), seq_idx, state)


def test_gradients_match_reference() -> None:
    rc.check_gradients(layer(num_v_heads=4), reference_scan, rc.randn(2, 7, HIDDEN))


def test_every_chunk_size_gives_the_same_result() -> None:
    rc.check_chunk_size_invariance(lambda c: layer(chunk_size=c), rc.randn(2, 37, HIDDEN))


def test_strong_decay_and_full_writes_match_reference() -> None:
    body = layer(chunk_size=16)
    with torch.no_grad():
        body.A_log.fill_(4.0)  # decays down to exp(-55 · softplus(·)) per step
        body.b_proj.weight.mul_(20.0)  # β near 0 or 1: full overwrites of a key's value
    rc.check_against_reference(body, reference_scan, rc.randn(2, 40, HIDDEN))


def test_float32_keeps_dtype_and_matches_float64() -> None:
    rc.check_float32(layer(dtype=torch.float32), rc.randn(2, 70, HIDDEN, dtype=torch.float32))


def test_bfloat16_runs_close_to_float32() -> None:
    rc.check_bfloat16(layer(dtype=torch.float32), rc.randn(2, 70, HIDDEN, dtype=torch.float32))


def test_empty_batch_and_state_layout() -> None:
    body = layer(num_v_heads=4, expand_v=2, conv_size=3)
    assert body(rc.randn(0, 5, HIDDEN)).shape == (0, 5, HIDDEN)
    window, s = body.init_state(3)
    assert window.shape == (3, 6 + 6 + 24, 2) and s.shape == (3, 4, 3, 6)
    assert not window.any() and not s.any()


test_conformance_kit_in_float32 = rc.float32_conformance("gated_deltanet")


# -- counts, widths and options ----------------------------------------------------------------

COUNT_CASES = [
    (256, {}),
    (12, {"num_heads": 3, "head_dim": 4, "expand_v": 1.5, "conv_size": 1}),
    (10, {"num_heads": 2, "num_v_heads": 6, "head_dim": 5, "expand_v": 2}),
]


@pytest.mark.parametrize(("hidden", "kwargs"), COUNT_CASES)
def test_param_count_and_state_size_are_exact(hidden: int, kwargs: dict) -> None:
    options = GatedDeltaNetOptions(**kwargs)
    rc.check_counts(make_bodies, formulas, options, hidden)


def test_scale_options_split_the_width_among_the_heads() -> None:
    options = GatedDeltaNetOptions()
    assert formulas.scale_options(options, 256) == options  # the defaults are H = 256's
    assert formulas.scale_options(options, 96).head_dim == 24
    assert formulas.scale_options(options, 2).head_dim == 1


def test_spec_and_registry() -> None:
    assert hybridzoo.get_registry().get("gated_deltanet") is SPEC and SPEC.symbol == "D"
    kwargs = {"embed_dim": 16, "hidden_size": 16, "gated_deltanet_head_dim": 4}
    model = hybridzoo.build("D S", mamba2_head_dim=8, **kwargs)
    count = hybridzoo.param_count("D S", mamba2_head_dim=8, **kwargs)
    assert count == sum(p.numel() for p in model.parameters())


def test_bad_options_are_named() -> None:
    with pytest.raises(ValueError, match="must be a multiple of num_heads=4"):
        GatedDeltaNetOptions(num_v_heads=6)
    with pytest.raises(ValueError, match=r"head_dim · expand_v"):
        GatedDeltaNetOptions(head_dim=3, expand_v=0.5)
    with pytest.raises(ValueError, match="chunk_size"):
        GatedDeltaNet(HIDDEN, chunk_size=3)
    with pytest.raises(hybridzoo.HybridZooError, match="gated_deltanet_num_heads"):
        hybridzoo.build("D", embed_dim=8, hidden_size=8, gated_deltanet_num_heads=0)


def test_initialisation() -> None:
    body = GatedDeltaNet(16, num_heads=2, num_v_heads=64, head_dim=2)
    a = torch.exp(body.A_log)
    dt = torch.nn.functional.softplus(body.dt_bias)
    assert a.min() >= 0.01 and a.max() <= 16
    assert dt.min() >= 1e-4 - 1e-9 and dt.max() <= 0.1 + 1e-6
    assert torch.all(body.o_norm.weight == 1) and body.o_norm.norm_before_gate


# -- transformers ----------------------------------------------------------------------------

HF_CONFIGS = [
    {"linear_num_key_heads": 2, "linear_num_value_heads": 2, "linear_key_head_dim": 4},
    {"linear_num_key_heads": 2, "linear_num_value_heads": 4, "linear_key_head_dim": 3},
]


def _qwen3_next(config: dict):
    transformers = pytest.importorskip("transformers")
    from transformers.models.qwen3_next.modeling_qwen3_next import Qwen3NextGatedDeltaNet

    cfg = transformers.Qwen3NextConfig(
        hidden_size=HIDDEN,
        linear_value_head_dim=6,
        linear_conv_kernel_dim=3,
        layer_types=["linear_attention"],
        **rc.UNUSED_CONFIG,
        **config,
    )
    torch.manual_seed(0)
    return rc.scramble(Qwen3NextGatedDeltaNet(cfg, layer_idx=0)), cfg


@pytest.mark.filterwarnings("ignore")
@pytest.mark.parametrize("config", HF_CONFIGS)
def test_same_as_qwen3_next_forward_and_backward(config: dict) -> None:
    hf, _ = _qwen3_next(config)
    ours = from_qwen3_next(hf)
    x = rc.randn(2, 11, HIDDEN, dtype=torch.float32)
    rc.check_same_as_transformers(ours, hf, x, lambda g: state_dict_to_qwen3_next(ours, g))


@pytest.mark.filterwarnings("ignore")
@pytest.mark.parametrize("config", HF_CONFIGS)
def test_step_equals_qwen3_next_cache_decoding(config: dict) -> None:
    hf, cfg = _qwen3_next(config)
    ours = from_qwen3_next(hf.eval())
    rc.check_same_as_transformers_decoding(
        ours, hf, cfg, rc.randn(2, 9, HIDDEN, dtype=torch.float32)
    )


@pytest.mark.filterwarnings("ignore")
def test_conversion_both_ways() -> None:
    transformers = pytest.importorskip("transformers")
    from transformers.models.qwen3_next.modeling_qwen3_next import Qwen3NextGatedDeltaNet

    hf, cfg = _qwen3_next(HF_CONFIGS[1])
    # from a prefixed state dict and the config
    prefix = "model.layers.0.linear_attn."
    state = {prefix + k: v for k, v in hf.state_dict().items()}
    ours = from_qwen3_next(state, cfg, prefix=prefix)
    x = rc.randn(2, 7, HIDDEN, dtype=torch.float32)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), hf(x), **rc.TOL32)
    # and back: the fused layout is recovered exactly, and a transformers layer built from our
    # sizes loads it
    back = state_dict_to_qwen3_next(ours)
    assert sorted(back) == sorted(hf.state_dict())
    for name, tensor in hf.state_dict().items():
        assert torch.equal(back[name], tensor), name
    assert state_dict_from_qwen3_next(back, ours).keys() == ours.state_dict().keys()
    rebuilt = transformers.Qwen3NextConfig(
        **{**cfg.to_dict(), **qwen3_next_config_kwargs(ours), "rms_norm_eps": 1e-5}
    )
    assert layer_kwargs_from_config(rebuilt)["num_v_heads"] == 4
    twin = Qwen3NextGatedDeltaNet(rebuilt, layer_idx=0)
    twin.load_state_dict(back)
    with pytest.raises(ValueError, match="config is required"):
        from_qwen3_next(hf.state_dict())
    with pytest.raises(ValueError, match="no 'in_proj_qkvz.weight'"):
        from_qwen3_next(state, cfg, prefix="model.layers.1.")

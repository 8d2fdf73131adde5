"""Mamba-2 mixer: the fast body against its time-step reference, step and prefill, exact counts
and widths, errors, and the same weights in transformers (Mamba2Mixer, Nemotron-H's mixer)."""

from __future__ import annotations

import math

import pytest
import recurrent_layer_checks as rc
import torch
from hypothesis import given
from hypothesis import strategies as st

import hybridzoo
from hybridzoo_plugins.mamba2 import SPEC, Mamba2Options, formulas
from hybridzoo_plugins.mamba2.convert import (
    conv_state_from_transformers,
    conv_state_to_transformers,
    mamba2_config_kwargs,
    mixer_from_transformers,
)
from hybridzoo_plugins.mamba2.layer import Mamba2Mixer, make_bodies
from hybridzoo_plugins.mamba2.reference import reference_scan


def mixer(hidden: int = 8, seed: int = 0, dtype: torch.dtype = rc.F64, **kwargs) -> Mamba2Mixer:
    """A mixer with every parameter redrawn (the norm weight and D matter too)."""
    kwargs = {"state_size": 3, "head_dim": 4, **kwargs}
    torch.manual_seed(seed)
    return rc.scramble(Mamba2Mixer(hidden, dtype=dtype, **kwargs), seed=seed + 1).eval()


configs = st.fixed_dictionaries(
    {
        "heads_per_group": st.integers(1, 2),
        "num_groups": st.integers(1, 2),
        "head_dim": st.integers(1, 3),
        "state_size": st.integers(1, 4),
        "conv_size": st.integers(1, 4),
        "chunk_size": st.sampled_from([1, 2, 4, 64]),
        "bias": st.booleans(),
        "conv_bias": st.booleans(),
    }
)


def _from_drawn(c: dict, seed: int = 0) -> Mamba2Mixer:
    heads = c.pop("heads_per_group") * c["num_groups"]
    # expand 1: the inner width heads · head_dim is the hidden size
    return mixer(heads * c["head_dim"], seed=seed, expand_factor=1, **c)


@given(config=configs, length=st.integers(1, 20), seed=st.integers(0, 100))
def test_forward_and_states_match_reference(config: dict, length: int, seed: int) -> None:
    layer = _from_drawn(config, seed)
    x = rc.randn(2, length, layer.hidden_size, seed=seed)
    rc.check_against_reference(layer, reference_scan, x)
    # from a random state: windows and SSM state are both read
    state = tuple(rc.randn(*t.shape, seed=seed + i + 1) for i, t in enumerate(layer.init_state(2)))
    rc.check_against_reference(layer, reference_scan, x, state)


@pytest.mark.parametrize("cut", [1, 5, 9])
def test_step_and_prefill_agree_with_forward(cut: int) -> None:
    rc.check_modes_agree(mixer(8, num_groups=2, conv_size=3), rc.randn(3, 12, 8), cut)


def test_time_step_clamp_matches_reference() -> None:
    layer = mixer(8, dt_limit_min=0.3, dt_limit_max=0.6)
    rc.check_against_reference(layer, reference_scan, rc.randn(2, 10, 8))
    unclamped = mixer(8)
    assert not torch.allclose(layer(rc.randn(2, 10, 8)), unclamped(rc.randn(2, 10, 8)))


def test_step_sees_parameter_updates() -> None:
    first, second = (mixer(8, seed=0), mixer(8, seed=3))
    rc.check_step_sees_parameter_updates(first, second, rc.randn(2, 6, 8))


@given(cuts=st.lists(st.integers(1, 12), max_size=4), seed=st.integers(0, 100))
def test_packed_documents_equal_separate_prefills(cuts: list[int], seed: int) -> None:
    """Random boundaries (documents of length 1 included) in row 0, one document in row 1."""
    body = mixer(8, num_groups=2, conv_size=3, chunk_size=4)
    seq_idx = torch.zeros(2, 13, dtype=torch.int64)
    for cut in cuts:
        seq_idx[0, cut:] += 1
    state = tuple(rc.randn(*t.shape, seed=seed + i) for i, t in enumerate(body.init_state(2)))
    rc.check_packing(body, reference_scan, rc.randn(2, 13, 8, seed=seed), seq_idx, state)


def test_gradients_match_reference() -> None:
    rc.check_gradients(mixer(8, num_groups=2, bias=True), reference_scan, rc.randn(2, 7, 8))


def test_every_chunk_size_gives_the_same_result() -> None:
    rc.check_chunk_size_invariance(lambda c: mixer(8, chunk_size=c), rc.randn(2, 37, 8))


def test_strong_decay_stays_finite_and_exact() -> None:
    layer = mixer(8, chunk_size=16)
    with torch.no_grad():
        layer.A_log.fill_(4.0)  # A = -55: exp(dt·A) down to ~1e-24 per step
    rc.check_against_reference(layer, reference_scan, rc.randn(2, 40, 8))


def test_float32_keeps_dtype_and_matches_float64() -> None:
    rc.check_float32(mixer(16, dtype=torch.float32), rc.randn(2, 70, 16, dtype=torch.float32))


def test_bfloat16_runs_close_to_float32() -> None:
    rc.check_bfloat16(mixer(16, dtype=torch.float32), rc.randn(2, 70, 16, dtype=torch.float32))


def test_empty_batch_and_state_layout() -> None:
    layer = mixer(8, num_groups=2, conv_size=3)
    assert layer(rc.randn(0, 5, 8)).shape == (0, 5, 8)
    window, ssm = layer.init_state(3)
    assert window.shape == (3, layer.conv_dim, 2) and ssm.shape == (3, 4, 4, 3)
    assert not window.any() and not ssm.any()


test_conformance_kit_in_float32 = rc.float32_conformance("mamba2")


# -- counts, widths and options ----------------------------------------------------------------

COUNT_CASES = [
    (256, {}),
    (32, {"state_size": 8, "num_groups": 2, "head_dim": 16, "bias": True}),
    (12, {"head_dim": 3, "expand_factor": 1, "conv_size": 1, "conv_bias": False}),
    (35, {"head_dim": 5, "expand_factor": 16 / 7, "num_groups": 4}),  # fractional expand
]


@pytest.mark.parametrize(("hidden", "kwargs"), COUNT_CASES)
def test_param_count_and_state_size_are_exact(hidden: int, kwargs: dict) -> None:
    options = Mamba2Options(**kwargs)
    rc.check_counts(make_bodies, formulas, options, hidden)
    assert hidden % formulas.hidden_size_multiple(options) == 0


@given(
    head_dim=st.integers(1, 12),
    num_groups=st.integers(1, 4),
    expand=st.sampled_from([1, 2, 3, 0.5, 1.5, 16 / 7]),
    hidden=st.integers(1, 200),
)
def test_hidden_size_multiple_is_exactly_the_valid_widths(
    head_dim: int, num_groups: int, expand: float, hidden: int
) -> None:
    options = Mamba2Options(head_dim=head_dim, num_groups=num_groups, expand_factor=expand)
    valid = hidden % formulas.hidden_size_multiple(options) == 0
    try:
        formulas.param_count(options, hidden)
    except ValueError:
        assert not valid
    else:
        assert valid


@given(hidden=st.integers(1, 300), expand=st.sampled_from([1, 2, 1.5]))
def test_scaled_options_are_valid_wherever_the_inner_width_is_whole(
    hidden: int, expand: float
) -> None:
    options = Mamba2Options(expand_factor=expand, num_groups=2)
    scaled = formulas.scale_options(options, hidden)
    if (expand * hidden) % 1:
        assert scaled == options
        return
    assert formulas.param_count(scaled, hidden) > 0
    assert scaled.head_dim == math.gcd(int(expand * hidden), 64)


def test_spec_and_registry() -> None:
    assert hybridzoo.get_registry().get("mamba2") is SPEC and SPEC.symbol == "S"
    model = hybridzoo.build("S S", embed_dim=32, hidden_size=32, mamba2_state_size=8)
    assert hybridzoo.param_count("S S", hidden_size=32, embed_dim=32, mamba2_state_size=8) == sum(
        p.numel() for p in model.parameters()
    )


def test_bad_options_are_named() -> None:
    with pytest.raises(ValueError, match="head_dim=5 must divide the inner width"):
        Mamba2Mixer(8, head_dim=5)
    with pytest.raises(ValueError, match="num_groups=3 must divide the number of heads"):
        Mamba2Mixer(8, head_dim=4, num_groups=3)
    with pytest.raises(ValueError, match="whole number"):
        Mamba2Mixer(5, expand_factor=1.5, head_dim=1)
    with pytest.raises(ValueError, match="chunk_size"):
        Mamba2Mixer(8, head_dim=4, chunk_size=48)
    with pytest.raises(ValueError, match="dt_limit_min must be < mamba2_dt_limit_max"):
        Mamba2Mixer(8, head_dim=4, dt_limit_min=0.5, dt_limit_max=0.1)
    with pytest.raises(ValueError, match="mamba2_dt_min must be <= mamba2_dt_max"):
        Mamba2Options(dt_min=0.2, dt_max=0.1)
    with pytest.raises(hybridzoo.HybridZooError, match="mamba2_head_dim"):
        hybridzoo.build("S", embed_dim=32, hidden_size=32, mamba2_head_dim=0)


def test_initialisation() -> None:
    layer = Mamba2Mixer(64, head_dim=8)  # 16 heads
    a = torch.exp(layer.A_log)
    dt = torch.nn.functional.softplus(layer.dt_bias)
    assert a.min() >= 1 and a.max() <= 16 and torch.all(layer.D == 1)
    assert dt.min() >= 1e-4 - 1e-9 and dt.max() <= 0.1 + 1e-6
    assert torch.all(layer.norm.weight == 1)
    assert all(p._no_weight_decay for p in (layer.A_log, layer.D, layer.dt_bias))


# -- transformers ----------------------------------------------------------------------------

HF_CONFIGS = [
    {"hidden_size": 16, "num_heads": 4, "head_dim": 8, "state_size": 4, "n_groups": 1},
    {
        "hidden_size": 12,
        "num_heads": 6,
        "head_dim": 2,
        "state_size": 3,
        "n_groups": 3,
        "expand": 1,
        "conv_kernel": 3,
        "use_bias": True,
        "use_conv_bias": False,
        "time_step_limit": (0.2, 0.7),
    },
]


def _hf_mamba2(config: dict):
    transformers = pytest.importorskip("transformers")
    from transformers.models.mamba2.modeling_mamba2 import Mamba2Mixer as HFMixer

    cfg = transformers.Mamba2Config(num_hidden_layers=1, chunk_size=4, **config)
    return rc.transformers_module(HFMixer, cfg), cfg


@rc.transformers_cases(HF_CONFIGS)
def test_same_as_transformers_forward_and_backward(config: dict) -> None:
    hf, _ = _hf_mamba2(config)
    ours = mixer_from_transformers(hf)
    assert sorted(ours.state_dict()) == sorted(hf.state_dict())
    x = rc.randn(2, 11, config["hidden_size"], dtype=torch.float32)
    rc.check_same_as_transformers(ours, hf, x, lambda grads: grads)


@pytest.mark.filterwarnings("ignore")
@pytest.mark.parametrize(
    "config", [HF_CONFIGS[0], {**HF_CONFIGS[1], "time_step_limit": (0.0, math.inf)}]
)
def test_step_equals_transformers_cache_decoding(config: dict) -> None:
    """Prefill then steps equal transformers' cached decoding, outputs and states. (Without a
    time-step limit: transformers' torch decoding path ignores ``time_step_limit``, so there its
    own decoding differs from its forward; ours equals its forward, see the tests above.)"""
    hf, cfg = _hf_mamba2(config)
    hf.eval()
    ours = mixer_from_transformers(hf)
    x = rc.randn(2, 9, config["hidden_size"], dtype=torch.float32)
    rc.check_same_as_transformers_decoding(ours, hf, cfg, x)


@pytest.mark.filterwarnings("ignore")
def test_conversion_both_ways_and_from_a_prefixed_state_dict() -> None:
    transformers = pytest.importorskip("transformers")
    from transformers.models.mamba2.modeling_mamba2 import Mamba2Mixer as HFMixer

    hf, cfg = _hf_mamba2(HF_CONFIGS[1])
    x = rc.randn(2, 7, 12, dtype=torch.float32)
    prefix = "backbone.layers.0.mixer."
    state = {prefix + k: v for k, v in hf.state_dict().items()}
    from_state = mixer_from_transformers(state, cfg, prefix=prefix)
    with torch.no_grad():
        torch.testing.assert_close(from_state(x), hf(x), **rc.TOL32)
    # the way back: a transformers mixer from our sizes loads our weights as they are, and
    # converts to the same mixer again
    ours = mixer(16, head_dim=4, num_groups=2, bias=True, dtype=torch.float32)
    cfg_back = transformers.Mamba2Config(num_hidden_layers=1, **mamba2_config_kwargs(ours))
    back = HFMixer(cfg_back, layer_idx=0)
    back.load_state_dict(ours.state_dict())
    again = mixer_from_transformers(back)
    x = rc.randn(2, 6, 16, dtype=torch.float32)
    with torch.no_grad():
        torch.testing.assert_close(back(x), ours(x), **rc.TOL32)
        torch.testing.assert_close(again(x), ours(x), rtol=0, atol=0)
    assert repr(again) == repr(ours) and again.dt_limit == ours.dt_limit
    window = rc.randn(2, 5, 3)  # conv states both ways: theirs keeps one (unread) input more
    theirs = conv_state_to_transformers(window)
    assert theirs.shape == (2, 5, 4) and not theirs[..., 0].any()
    torch.testing.assert_close(conv_state_from_transformers(theirs), window, rtol=0, atol=0)
    with pytest.raises(ValueError, match="config is required"):
        mixer_from_transformers(hf.state_dict())
    with pytest.raises(ValueError, match="no 'A_log'"):
        mixer_from_transformers(state, cfg, prefix="model.")


@pytest.mark.filterwarnings("ignore")
def test_same_as_nemotron_h_mixer_with_its_time_step_floor() -> None:
    """Nemotron-H: inner width heads · head_dim (here a fractional expand, 24 / 16), and time
    steps clamped to at least time_step_min."""
    transformers = pytest.importorskip("transformers")
    from transformers.models.nemotron_h.modeling_nemotron_h import NemotronHMamba2Mixer

    cfg = transformers.NemotronHConfig(
        hidden_size=16,
        mamba_num_heads=4,
        mamba_head_dim=6,
        ssm_state_size=3,
        n_groups=2,
        time_step_min=0.3,
        time_step_max=1.0,
        layers_block_type=["mamba"],
        **rc.UNUSED_CONFIG,
    )
    hf = rc.transformers_module(NemotronHMamba2Mixer, cfg)
    ours = mixer_from_transformers(hf)
    assert ours.intermediate_size == 24 and ours.dt_limit == (0.3, math.inf)
    rc.check_same_as_transformers(ours, hf, rc.randn(2, 9, 16, dtype=torch.float32), lambda g: g)

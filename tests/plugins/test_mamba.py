"""Mamba-1 mixer: forward == time-step reference, step/prefill == forward, counts, conversion."""

from __future__ import annotations

import os

import pytest
import torch

from hybridzoo.ops.selective_scan import selective_scan_backend
from hybridzoo.ops.selective_scan.fused import extension_error
from hybridzoo_plugins.mamba import MambaOptions, formulas
from hybridzoo_plugins.mamba.convert import mixer_from_transformers
from hybridzoo_plugins.mamba.layer import MambaMixer, make_bodies
from hybridzoo_plugins.mamba.reference import mixer_reference

F64 = torch.float64
TOL64 = {"rtol": 1e-9, "atol": 1e-10}
# small configurations: (hidden_size, options)
CONFIGS = [
    (16, {"state_size": 4}),
    (12, {"state_size": 3, "expand_factor": 1, "conv_size": 2, "dt_rank": 5, "bias": True}),
    (8, {"state_size": 2, "expand_factor": 3, "conv_size": 1, "conv_bias": False}),
]
BACKENDS = ["compiled", "torch"]


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    """Both scan backends; the compiled one is skipped (with the reason) where it is off."""
    if request.param == "compiled" and selective_scan_backend() != "compiled":
        message = f"compiled selective scan unavailable: {extension_error() or 'switched off'}"
        if extension_error() and os.environ.get("HYBRIDZOO_REQUIRE_COMPILED", "") not in ("", "0"):
            pytest.fail(message)
        pytest.skip(message)
    return request.param


def _mixer(hidden: int, opts: dict, dtype: torch.dtype = F64, seed: int = 0, **kw) -> MambaMixer:
    torch.manual_seed(seed)
    mixer = MambaMixer(hidden, dtype=dtype, **opts, **kw)
    _scramble(mixer)
    return mixer


@torch.no_grad()
def _scramble(mixer: MambaMixer, seed: int = 1) -> None:
    """Redraw parameters at O(1) scale with time steps in [0.05, 2] so that decays matter."""
    gen = torch.Generator().manual_seed(seed)
    for name, p in mixer.named_parameters():
        noise = torch.randn(p.shape, generator=gen, dtype=p.dtype)
        if p.ndim >= 2 and name != "A_log":
            noise /= p[0].numel() ** 0.5
        p.copy_(noise)
    dt = torch.empty_like(mixer.dt_proj.bias).uniform_(0.05, 2.0, generator=gen)
    mixer.dt_proj.bias.copy_(dt + torch.log(-torch.expm1(-dt)))
    mixer.A_log.uniform_(-1.0, 1.5, generator=gen)


def _randn(*shape: int, dtype: torch.dtype = F64, seed: int = 2) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


@pytest.mark.parametrize(("hidden", "opts"), CONFIGS)
def test_forward_matches_reference(hidden: int, opts: dict, backend: str) -> None:
    mixer = _mixer(hidden, opts, scan_backend=backend)
    x = _randn(2, 11, hidden)
    with torch.no_grad():
        torch.testing.assert_close(mixer(x), mixer_reference(mixer, x), **TOL64)


@pytest.mark.parametrize(("hidden", "opts"), CONFIGS)
def test_prefill_from_a_state_matches_reference(hidden: int, opts: dict, backend: str) -> None:
    mixer = _mixer(hidden, opts, scan_backend=backend)
    inner, n, k = mixer.intermediate_size, mixer.state_size, mixer.conv_size
    state = (_randn(3, inner, k - 1, seed=5), _randn(3, inner, n, seed=6))
    x = _randn(3, 7, hidden)
    with torch.no_grad():
        y, (window, h) = mixer.prefill(x, state)
        y_ref, (window_ref, h_ref) = mixer_reference(mixer, x, state, output_final_state=True)
    torch.testing.assert_close(y, y_ref, **TOL64)
    torch.testing.assert_close(window, window_ref, **TOL64)
    torch.testing.assert_close(h, h_ref, **TOL64)


@pytest.mark.parametrize(("hidden", "opts"), CONFIGS)
def test_step_equals_forward(hidden: int, opts: dict) -> None:
    mixer = _mixer(hidden, opts)
    x = _randn(2, 9, hidden)
    state = mixer.init_state(2)
    ids = [id(t) for t in state]
    with torch.no_grad():
        full = mixer(x)
        ys = []
        for t in range(x.shape[1]):
            y_t, state = mixer.step(x[:, t], state)
            ys.append(y_t)
    assert [id(t) for t in state] == ids  # updated in place
    torch.testing.assert_close(torch.stack(ys, 1), full, **TOL64)


def test_step_sees_parameter_updates() -> None:
    """step caches A = -exp(A_log); in-place updates and load_state_dict must invalidate it."""
    hidden, opts = CONFIGS[0]
    mixer = _mixer(hidden, opts)
    other = _mixer(hidden, opts, seed=3)
    _scramble(other, seed=4)
    x = _randn(2, 5, hidden)
    with torch.no_grad():
        for update in (
            lambda: mixer.A_log.add_(0.5),
            lambda: mixer.load_state_dict(other.state_dict()),
        ):
            mixer.step(x[:, 0], mixer.init_state(2))  # fills the cache
            update()
            state = mixer.init_state(2)
            ys = [mixer.step(x[:, t], state)[0] for t in range(x.shape[1])]
            torch.testing.assert_close(torch.stack(ys, 1), mixer(x), **TOL64)


@pytest.mark.parametrize("cut", [1, 3, 8])
@pytest.mark.parametrize(("hidden", "opts"), CONFIGS)
def test_prefill_then_steps_equals_forward(hidden: int, opts: dict, cut: int) -> None:
    mixer = _mixer(hidden, opts)
    x = _randn(2, 10, hidden)
    with torch.no_grad():
        full = mixer(x)
        y1, state = mixer.prefill(x[:, :cut])
        y_mid, state = mixer.prefill(x[:, cut : cut + 1], state)
        ys = [y1, y_mid]
        for t in range(cut + 1, x.shape[1]):
            y_t, state = mixer.step(x[:, t], state)
            ys.append(y_t.unsqueeze(1))
    torch.testing.assert_close(torch.cat(ys, 1), full, **TOL64)


def test_float32_and_backends_agree() -> None:
    mixer = _mixer(16, CONFIGS[0][1], dtype=torch.float32)
    x = _randn(2, 70, 16, dtype=torch.float32)
    with torch.no_grad():
        y = mixer(x)
        mixer.scan_backend = "torch"
        y_torch = mixer(x)
        y_ref = mixer_reference(mixer.double(), x.double())
    assert y.dtype == torch.float32
    torch.testing.assert_close(y, y_torch, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(y.double(), y_ref, rtol=1e-4, atol=1e-5)


def test_gradients_match_reference_and_reach_every_parameter(backend: str) -> None:
    hidden, opts = CONFIGS[1]
    mixer = _mixer(hidden, opts, scan_backend=backend)
    x = _randn(2, 6, hidden).requires_grad_(True)
    w = _randn(2, 6, hidden, seed=3)
    params = [x, *mixer.parameters()]
    grads = torch.autograd.grad((mixer(x) * w).sum(), params)
    grads_ref = torch.autograd.grad((mixer_reference(mixer, x) * w).sum(), params)
    for g, g_ref in zip(grads, grads_ref, strict=True):
        assert g.abs().sum() > 0
        torch.testing.assert_close(g, g_ref, **TOL64)


def test_causal_and_batch_rows_independent() -> None:
    mixer = _mixer(16, CONFIGS[0][1])
    x = _randn(3, 8, 16)
    x2 = x.clone()
    x2[:, 5:] += 1.0
    x2[2] += 1.0
    with torch.no_grad():
        y, y2 = mixer(x), mixer(x2)
    torch.testing.assert_close(y2[:2, :5], y[:2, :5], rtol=0, atol=0)
    assert not torch.allclose(y2[:, 5:], y[:, 5:])


@pytest.mark.parametrize(("hidden", "opts"), [*CONFIGS, (64, {}), (40, {"bias": True})])
def test_param_count_and_state_size(hidden: int, opts: dict) -> None:
    mixer = make_bodies(MambaOptions(**opts), hidden)
    assert isinstance(mixer, MambaMixer)
    options = MambaOptions(**opts)
    assert formulas.param_count(options, hidden) == sum(p.numel() for p in mixer.parameters())
    state = mixer.init_state(1)
    assert formulas.state_size(options, hidden) == sum(t.numel() for t in state)
    assert state[0].shape == (1, mixer.intermediate_size, mixer.conv_size - 1)


def test_parameter_names_shapes_and_init() -> None:
    mixer = MambaMixer(32, state_size=8)
    shapes = {k: tuple(v.shape) for k, v in mixer.state_dict().items()}
    assert shapes == {
        "in_proj.weight": (128, 32),
        "conv1d.weight": (64, 1, 4),
        "conv1d.bias": (64,),
        "x_proj.weight": (2 + 16, 64),
        "dt_proj.weight": (64, 2),
        "dt_proj.bias": (64,),
        "A_log": (64, 8),
        "D": (64,),
        "out_proj.weight": (32, 64),
    }
    torch.testing.assert_close(mixer.A_log[5], torch.log(torch.arange(1.0, 9.0)))
    assert torch.all(mixer.D == 1)
    dt = torch.nn.functional.softplus(mixer.dt_proj.bias)
    assert dt.min() >= 1e-4 - 1e-9 and dt.max() <= 0.1 + 1e-6


def test_formulas_and_errors() -> None:
    assert formulas.resolve_dt_rank(256) == 16
    assert formulas.resolve_dt_rank(17) == 2
    assert formulas.resolve_dt_rank(17, 5) == 5
    assert formulas.intermediate_size(10, 1.5) == 15
    with pytest.raises(ValueError, match="dt_rank"):
        formulas.resolve_dt_rank(16, "big")
    with pytest.raises(ValueError, match="whole number"):
        formulas.intermediate_size(5, 1.3)
    with pytest.raises(TypeError, match="state_size"):
        MambaMixer(16, state_size=2.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="dt_max"):
        MambaMixer(16, dt_min=0.1, dt_max=0.01)
    with pytest.raises(ValueError, match="scan_backend"):
        MambaMixer(16, scan_backend="gpu")
    with pytest.raises(ValueError, match="dt_init_floor"):
        MambaMixer(16, dt_init_floor=-1e-4)
    with pytest.raises(ValueError, match="'auto' or an integer >= 1, got 0"):
        MambaOptions(dt_rank=0)


def _hf_mixer(**config):
    transformers = pytest.importorskip("transformers", reason="transformers is not installed")
    from transformers.models.mamba.modeling_mamba import MambaMixer as HFMambaMixer

    cfg = transformers.MambaConfig(num_hidden_layers=1, **config)
    torch.manual_seed(0)
    hf = HFMambaMixer(cfg, layer_idx=0).eval()
    _scramble(hf)  # same parameter names
    return hf, cfg


@pytest.mark.filterwarnings("ignore")
@pytest.mark.parametrize(
    "config",
    [
        {"hidden_size": 16, "state_size": 4},
        {"hidden_size": 24, "state_size": 3, "expand": 1, "conv_kernel": 3, "use_bias": True},
    ],
)
def test_conversion_from_transformers(config: dict) -> None:
    hf, cfg = _hf_mixer(**config)
    x = _randn(2, 13, config["hidden_size"], dtype=torch.float32)
    ours = mixer_from_transformers(hf)
    assert not ours.training
    with torch.no_grad():
        expected = hf(x)
        torch.testing.assert_close(ours(x), expected, rtol=1e-4, atol=1e-5)
        # from a prefixed state dict + config
        state = {f"backbone.layers.0.mixer.{k}": v for k, v in hf.state_dict().items()}
        ours2 = mixer_from_transformers(state, cfg, prefix="backbone.layers.0.mixer.")
        torch.testing.assert_close(ours2(x), expected, rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="config is required"):
        mixer_from_transformers(hf.state_dict())

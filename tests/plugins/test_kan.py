"""KAN layer: B-spline basis vs scalar Cox–de Boor, spline properties, forward vs reference."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import hybridzoo
from hybridzoo.nn.positionwise import positionwise_prefill, positionwise_step
from hybridzoo_plugins.kan import SPEC, KANOptions
from hybridzoo_plugins.kan.formulas import param_count
from hybridzoo_plugins.kan.layer import KANLayer, b_spline_basis, grid_knots, make_bodies
from hybridzoo_plugins.kan.reference import knot_list, reference_basis, reference_forward

TOL = {"atol": 1e-12, "rtol": 1e-12}  # float64
GRIDS = [(1, 1, (-2.0, 2.0)), (2, 2, (0.0, 1.0)), (5, 3, (-2.0, 2.0)), (3, 3, (-1.0, 3.0))]


def test_degree_zero_basis_is_the_interval_indicator() -> None:
    x = torch.tensor([-2.0, -1.9, -1.2, 0.0, 1.99, 2.0, -2.01], dtype=torch.float64)
    basis = b_spline_basis(x, grid_size=5, spline_order=0, grid_range=(-2.0, 2.0))
    # intervals [-2, -1.2), [-1.2, -0.4), [-0.4, 0.4), [0.4, 1.2), [1.2, 2): half-open
    expected = torch.zeros(7, 5, dtype=torch.float64)
    for row, col in [(0, 0), (1, 0), (2, 1), (3, 2), (4, 4)]:
        expected[row, col] = 1.0
    torch.testing.assert_close(basis, expected, atol=0, rtol=0)


def spec(grid_size: int, order: int, grid_range: tuple[float, float]) -> dict:
    return {"grid_size": grid_size, "spline_order": order, "grid_range": grid_range}


def test_knots_match_reference_and_extend_the_grid() -> None:
    knots = grid_knots(5, 3, (-2.0, 2.0))
    assert knots.tolist() == knot_list(5, 3, (-2.0, 2.0))
    assert len(knots) == 5 + 2 * 3 + 1
    torch.testing.assert_close(knots[3], torch.tensor(-2.0, dtype=torch.float64))
    torch.testing.assert_close(knots[-4], torch.tensor(2.0, dtype=torch.float64))


# ---------------------------------------------------------------- basis vs Cox–de Boor
@pytest.mark.parametrize(("grid_size", "order", "grid_range"), GRIDS)
def test_basis_matches_cox_de_boor(
    grid_size: int, order: int, grid_range: tuple[float, float]
) -> None:
    knots = grid_knots(grid_size, order, grid_range)
    span = knots[-1] - knots[0]
    # a sweep from well below the extended grid to well above it, plus every knot exactly
    x = torch.cat(
        [torch.linspace(knots[0] - span, knots[-1] + span, 157, dtype=torch.float64), knots]
    )
    fast = b_spline_basis(x, **spec(grid_size, order, grid_range))
    assert fast.shape == (x.numel(), grid_size + order)
    torch.testing.assert_close(
        fast, reference_basis(x, **spec(grid_size, order, grid_range)), **TOL
    )


@given(
    x=st.lists(st.floats(-10, 10, allow_nan=False), min_size=1, max_size=20),
    grid_size=st.integers(1, 7),
    order=st.integers(0, 4),
)
def test_basis_matches_cox_de_boor_random(x: list[float], grid_size: int, order: int) -> None:
    xs = torch.tensor(x, dtype=torch.float64)
    args = spec(grid_size, order, (-1.5, 2.5))
    torch.testing.assert_close(b_spline_basis(xs, **args), reference_basis(xs, **args), **TOL)


@pytest.mark.parametrize(("grid_size", "order", "grid_range"), GRIDS)
def test_partition_of_unity_inside_grid(
    grid_size: int, order: int, grid_range: tuple[float, float]
) -> None:
    lo, hi = grid_range
    x = torch.cat(
        [
            torch.linspace(lo, hi, 301, dtype=torch.float64),
            grid_knots(grid_size, order, grid_range)[order : grid_size + order + 1],
        ]
    )
    basis = b_spline_basis(x, **spec(grid_size, order, grid_range))
    torch.testing.assert_close(basis.sum(-1), torch.ones_like(x), **TOL)
    assert (basis >= 0).all()


@pytest.mark.parametrize(("grid_size", "order", "grid_range"), GRIDS)
def test_basis_zero_outside_extended_grid_and_tapering_in_the_extension(
    grid_size: int, order: int, grid_range: tuple[float, float]
) -> None:
    knots = grid_knots(grid_size, order, grid_range)
    outside = torch.tensor(
        [knots[0] - 1e-9, knots[0] - 3.0, knots[-1], knots[-1] + 1e-9, knots[-1] + 7.0],
        dtype=torch.float64,
    )
    assert (b_spline_basis(outside, **spec(grid_size, order, grid_range)) == 0).all()
    # in the extension (between the outermost knot and the grid) the sum is strictly in (0, 1)
    lo, hi = grid_range
    extension = torch.tensor([(knots[0] + lo) / 2, (hi + knots[-1]) / 2], dtype=torch.float64)
    total = b_spline_basis(extension, **spec(grid_size, order, grid_range)).sum(-1)
    assert ((total > 0) & (total < 1)).all()


def _derivatives(x: torch.Tensor, g: int, args: dict, count: int = 3) -> list[torch.Tensor]:
    """B_g and its first ``count`` derivatives at each point of ``x`` (autograd, float64)."""
    x = x.clone().requires_grad_(True)
    values = [b_spline_basis(x, **args)[:, g]]
    for _ in range(count):
        (d,) = torch.autograd.grad(values[-1].sum(), x, create_graph=True)
        values.append(d)
    return [v.detach() for v in values]


@pytest.mark.parametrize(("grid_size", "grid_range"), [(5, (-2.0, 2.0)), (3, (0.0, 1.0))])
def test_cubic_basis_is_c2_at_every_knot(grid_size: int, grid_range: tuple[float, float]) -> None:
    # Left and right limits at each knot (incl. the extended ones) agree for the value and the
    # first two derivatives; the third derivative jumps (so the check can see a discontinuity).
    args = spec(grid_size, 3, grid_range)
    knots = grid_knots(grid_size, 3, grid_range)
    eps = 1e-7
    h = (grid_range[1] - grid_range[0]) / grid_size
    third_jumps = []
    for g in range(grid_size + 3):
        left = _derivatives(knots - eps, g, args)
        right = _derivatives(knots + eps, g, args)
        for order, (a, b) in enumerate(zip(left[:3], right[:3], strict=True)):
            # |jump| <= 2·eps·sup|next derivative|, and sup|B'''| = 1/h³ for cubic B-splines
            bound = 2 * eps * 4 / h ** (order + 1) + 1e-9
            assert (a - b).abs().max() <= bound, (g, order)
        third_jumps.append((left[3] - right[3]).abs().max())
    assert min(third_jumps) > 0.5 / h**3


def test_quadratic_basis_first_derivative_continuous_second_jumps() -> None:
    args = spec(4, 2, (-2.0, 2.0))
    knots = grid_knots(4, 2, (-2.0, 2.0))
    left = _derivatives(knots[1:-1] - 1e-7, 2, args, count=2)
    right = _derivatives(knots[1:-1] + 1e-7, 2, args, count=2)
    assert (left[1] - right[1]).abs().max() < 1e-5
    assert (left[2] - right[2]).abs().max() > 0.1


# ---------------------------------------------------------------- the layer
def make_layer(hidden: int = 3, seed: int = 0, **kwargs: object) -> KANLayer:
    torch.manual_seed(seed)
    layer = KANLayer(hidden, **kwargs).double()
    with torch.no_grad():
        for p in layer.parameters():
            p.normal_()
    return layer


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"grid_size": 2, "spline_order": 1},
        {"grid_size": 3, "spline_order": 0},
        {"grid_size": 7, "spline_order": 2, "grid_range": (-1.0, 3.0)},
        {"spline_scaler": False},
    ],
)
def test_forward_matches_reference(kwargs: dict) -> None:
    layer = make_layer(**kwargs)
    x = torch.randn(2, 4, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(1)) * 3
    x[0, 0, 0] = 50.0  # far outside the grid: base path only for this input
    torch.testing.assert_close(layer(x), reference_forward(layer, x), **TOL)


def test_outside_extended_grid_only_base_path_remains() -> None:
    layer = make_layer(4, grid_size=5, grid_range=(-2.0, 2.0))
    x = torch.tensor([[[-9.0, 9.0, 4.41, -4.41]]], dtype=torch.float64)  # extension ends at ±4.4
    base = torch.nn.functional.silu(x) @ layer.base_weight.T
    torch.testing.assert_close(layer(x), base, **TOL)


def test_step_and_prefill_equal_forward() -> None:
    # the layer is positionwise: the core supplies its step mode (and holds no state for it)
    layer = make_layer(3)
    x = torch.randn(2, 5, 3, dtype=torch.float64)
    y = layer(x)
    assert SPEC.capabilities.positionwise and not hasattr(layer, "step")
    steps = torch.stack([positionwise_step(layer, x[:, t])[0] for t in range(5)], 1)
    torch.testing.assert_close(steps, y, **TOL)
    torch.testing.assert_close(positionwise_prefill(layer, x)[0], y, **TOL)
    model = hybridzoo.build("K K", embed_dim=3, hidden_size=3, dropout=0.0, output="sequence")
    model = model.double().eval()
    state = model.init_state(2)
    assert state.layers == [[()], [()]]
    model_steps = torch.stack([model.step(x[:, t], state)[0] for t in range(5)], 1)
    torch.testing.assert_close(model_steps, model(x), **TOL)


def test_float32_matches_float64() -> None:
    layer = make_layer(4)
    x = torch.randn(2, 6, 4, dtype=torch.float64) * 2
    expected = layer(x)
    out = layer.float()(x.float())
    assert out.dtype == torch.float32
    torch.testing.assert_close(out.double(), expected, atol=1e-4, rtol=1e-4)


def test_gradients_reach_every_parameter() -> None:
    layer = make_layer(3)
    layer(torch.rand(2, 5, 3, dtype=torch.float64) * 3 - 1.5).square().sum().backward()
    for name, p in layer.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"grid_size": 1, "spline_order": 0},
        {"grid_size": 1, "spline_order": 1},
        {"grid_size": 8},
        {"spline_scaler": False},
    ],
)
@pytest.mark.parametrize("hidden", [1, 7])
def test_param_count(hidden: int, kwargs: dict) -> None:
    options = KANOptions(**kwargs)
    layer = make_bodies(options, hidden)
    assert param_count(options, hidden) == sum(p.numel() for p in layer.parameters())
    assert SPEC.step_state_size(options, hidden) == 0


def test_default_param_count() -> None:
    assert param_count(KANOptions(), 256) == 256 * 256 * (1 + 8 + 1)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"grid_size": 0}, ValueError, "grid_size"),
        ({"grid_size": 2.0}, TypeError, "grid_size"),
        ({"spline_order": -1}, ValueError, "spline_order"),
        ({"grid_range": (1.0, 1.0)}, ValueError, "grid_range"),
        ({"grid_range": (0.0,)}, TypeError, "grid_range"),
        ({"grid_range": "wide"}, TypeError, "grid_range"),
        ({"spline_scaler": 1}, TypeError, "spline_scaler"),
    ],
)
def test_bad_arguments(kwargs: dict, error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        KANLayer(4, **kwargs)

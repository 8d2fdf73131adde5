"""The ``moe`` layer: routing, dropless grouped compute, exact counts, auxiliary losses, each
token on its own, bf16, the conformance kit, and the same weights in transformers' Mixtral and
Qwen2-MoE blocks."""

from __future__ import annotations

import attrs
import pytest
import torch
from layer_helpers import bf16_errors, kit_params, randomize
from torch.utils.flop_counter import FlopCounterMode

import hybridzoo
from hybridzoo_plugins.moe import SPEC, MoEOptions
from hybridzoo_plugins.moe.convert import load_block, options_from_block
from hybridzoo_plugins.moe.layer import MixtureOfExperts
from hybridzoo_plugins.moe.reference import reference_forward

HIDDEN = 12
VARIANTS = {
    "softmax": {"expert_size": 8},
    "sigmoid": {"expert_size": 8, "router": "sigmoid", "normalize_top_k": False},
    "shared": {"expert_size": 8, "shared_expert_size": 6, "shared_expert_gate": True},
    "switch": {"expert_size": 8, "top_k": 1, "normalize_top_k": False, "num_experts": 3},
}


def make_body(seed: int = 0, **options) -> MixtureOfExperts:
    record = MoEOptions(**{"num_experts": 4, "expert_size": 6, **options})
    torch.manual_seed(seed)
    body = SPEC.factory(record, HIDDEN)[0].double()
    return randomize(body, seed=seed)


def tokens(batch: int = 2, length: int = 9, seed: int = 1) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(batch, length, HIDDEN, generator=gen, dtype=torch.float64)


@kit_params("moe", VARIANTS)
def test_conformance(check) -> None:
    check()


@pytest.mark.parametrize("grad", [False, True])
def test_non_finite_later_tokens_move_no_earlier_output(grad: bool) -> None:
    # NaN tokens all route to the same experts: the other experts' blocks shrink to a row or
    # two, which BLAS would multiply with another kernel (another rounding) without padding
    body = make_body().eval()
    x = tokens(2, 20)
    x2 = x.clone()
    x2[:, 1:] = float("nan")
    with torch.set_grad_enabled(grad):
        y, y2 = body(x), body(x2)
    assert torch.equal(y2[:, :1], y[:, :1])


@pytest.mark.parametrize("variant", VARIANTS)
def test_matches_reference(variant: str) -> None:
    body = make_body(**VARIANTS[variant])
    x = tokens()
    torch.testing.assert_close(body(x), reference_forward(body, x), atol=1e-12, rtol=1e-12)


@pytest.mark.parametrize("variant", ["softmax", "shared"])
@pytest.mark.parametrize("shape", [(3, 10), (1, 1)])
def test_inference_path_equals_autograd_path(variant: str, shape: tuple[int, int]) -> None:
    # without autograd the experts run in place into one buffer (one token: one by one)
    body = make_body(**VARIANTS[variant]).eval()
    x = tokens(*shape)
    with_grad = body(x)
    with torch.no_grad():
        torch.testing.assert_close(body(x), with_grad, atol=1e-13, rtol=1e-13)


# ---------------------------------------------------------------- counts and compute
@pytest.mark.parametrize("variant", VARIANTS)
def test_param_counts(variant: str) -> None:
    record = MoEOptions(**VARIANTS[variant])
    body = SPEC.factory(record, HIDDEN)[0]
    assert SPEC.param_count(record, HIDDEN) == sum(p.numel() for p in body.parameters())
    per_expert = 3 * record.expert_size * HIDDEN
    shared = sum(p.numel() for name, p in body.named_parameters() if name.startswith("shared"))
    active = record.num_experts * HIDDEN + record.top_k * per_expert + shared
    assert SPEC.active_param_count(record, HIDDEN) == active


def test_defaults_count() -> None:
    # 8 experts of 3·512·256, router 8·256; per token 2 experts
    record = MoEOptions()
    assert SPEC.param_count(record, 256) == 8 * 256 + 8 * 3 * 512 * 256
    assert SPEC.active_param_count(record, 256) == 8 * 256 + 2 * 3 * 512 * 256


def test_gradients_touch_only_the_chosen_experts() -> None:
    body = make_body(num_experts=5, top_k=2)
    x = tokens(1, 1)
    body(x).sum().backward()
    chosen = body.route(x.view(1, -1))[3]
    used = set(chosen.view(-1).tolist())
    for e in range(5):
        touched = bool(body.gate_up.grad[e].any()) and bool(body.down.grad[e].any())
        assert touched == (e in used), (e, used)


def test_compute_is_grouped_not_dense() -> None:
    # the matmul FLOPs are those of the router and of each token's k experts, not of all E
    body = make_body(num_experts=8, top_k=2, expert_size=16, shared_expert_size=4)
    x = tokens(3, 20)
    with FlopCounterMode(display=False) as counter:
        body(x)
    n = 3 * 20
    expected = 2 * n * (8 * HIDDEN + 2 * 3 * 16 * HIDDEN + 3 * 4 * HIDDEN)
    assert counter.get_total_flops() == expected


def test_dropless_when_every_token_picks_one_expert() -> None:
    # a router that sends every token to experts 0 and 1: none is dropped or capped
    body = make_body(num_experts=4)
    with torch.no_grad():
        body.router.weight.zero_()
        body.router.weight[:2] = 0.0
        body.router.weight[2:] = -5.0 * body.router.weight.new_ones(2, HIDDEN)
    x = tokens(2, 30).abs()
    assert set(body.route(x.view(-1, HIDDEN))[3].view(-1).tolist()) == {0, 1}
    torch.testing.assert_close(body(x), reference_forward(body, x), atol=1e-12, rtol=1e-12)


# ---------------------------------------------------------------- each token on its own
def test_each_token_depends_on_itself_only() -> None:
    body = make_body()
    x = tokens(2, 7)
    y = body(x)
    for b in range(2):
        for t in range(7):
            alone = body(x[b : b + 1, t : t + 1])
            torch.testing.assert_close(alone[0, 0], y[b, t], atol=1e-12, rtol=1e-12)


def test_non_finite_token_stays_contained() -> None:
    body = make_body(shared_expert_size=4)
    x = tokens(2, 9)
    y = body(x)
    x[1, 4] = float("nan")
    x[0, 2] = float("inf")
    y2 = body(x)
    keep = torch.ones(2, 9, dtype=torch.bool)
    keep[1, 4] = keep[0, 2] = False
    assert torch.isfinite(y2[keep]).all()
    torch.testing.assert_close(y2[keep], y[keep], atol=1e-12, rtol=1e-12)


@pytest.mark.parametrize("variant", ["softmax", "shared"])
def test_bf16_close_to_float64(variant: str) -> None:
    body = make_body(**{**VARIANTS[variant], "num_experts": 4}).float()
    randomize(body, std=0.3)
    errors = bf16_errors(body, reference_forward, length=600, batch=1)
    assert errors.max() < 3e-2, errors.max()


def test_model_steps_equal_forward() -> None:
    # positionwise: the core's step mode runs the body on one position at a time
    model = hybridzoo.build(
        "E F E", embed_dim=HIDDEN, hidden_size=HIDDEN, moe_expert_size=4, output="sequence"
    )
    model = model.double().eval()
    x = tokens(2, 6)
    state = model.init_state(2)
    steps = torch.stack([model.step(x[:, t], state)[0] for t in range(6)], 1)
    torch.testing.assert_close(steps, model(x), atol=1e-12, rtol=1e-12)


# ---------------------------------------------------------------- auxiliary losses
def test_aux_losses_match_mixtral_and_st_moe() -> None:
    mixtral = pytest.importorskip("transformers.models.mixtral.modeling_mixtral")
    body = make_body(num_experts=5, top_k=2, aux_loss_coef=0.25, z_loss_coef=0.5).train()
    x = tokens(3, 11)
    body(x)
    losses = body.aux_losses()
    logits = body.route(x.view(-1, HIDDEN))[0]
    balance = mixtral.load_balancing_loss_func((logits,), 5, 2)
    torch.testing.assert_close(losses["load_balancing"], 0.25 * balance.double(), rtol=1e-6, atol=0)
    z = torch.logsumexp(logits, -1).square().mean()
    torch.testing.assert_close(losses["z_loss"], 0.5 * z, rtol=1e-12, atol=0)


def test_balanced_router_gives_k() -> None:
    # uniform probabilities: E · Σ f_e / E = Σ f_e = k, whichever experts the ties pick
    body = make_body(num_experts=6, top_k=3, aux_loss_coef=1.0, z_loss_coef=0.0).train()
    with torch.no_grad():
        body.router.weight.zero_()
    body(tokens())
    assert set(body.aux_losses()) == {"load_balancing"}
    torch.testing.assert_close(body.aux_losses()["load_balancing"].item(), 3.0)


def test_aux_losses_train_the_router() -> None:
    body = make_body(aux_loss_coef=1.0, z_loss_coef=1.0).train()
    body(tokens())
    sum(body.aux_losses().values()).backward()
    assert body.router.weight.grad is not None and body.router.weight.grad.abs().sum() > 0


def test_no_aux_losses_in_eval_or_with_zero_coefficients() -> None:
    body = make_body().train()
    body(tokens())
    assert set(body.aux_losses()) == {"load_balancing", "z_loss"}
    body.eval()(tokens())
    assert body.aux_losses() == {}
    silent = make_body(aux_loss_coef=0.0, z_loss_coef=0.0).train()
    silent(tokens())
    assert silent.aux_losses() == {}


def test_model_collects_aux_losses_by_position() -> None:
    model = hybridzoo.build(
        "E F E", embed_dim=HIDDEN, hidden_size=HIDDEN, moe_expert_size=4, dropout=0.0
    )
    model.train()(tokens().float())
    keys = set(hybridzoo.aux_losses(model))
    assert keys == {f"{p}.moe.{n}" for p in (1, 3) for n in ("load_balancing", "z_loss")}


# ---------------------------------------------------------------- transformers, same weights
#: transformers computes the router's softmax in float32 (float64 blocks included)
ROUTER_FP32 = {"atol": 1e-6, "rtol": 1e-5}


def _compare(ours: MixtureOfExperts, theirs: torch.nn.Module, x: torch.Tensor) -> None:
    x1 = x.clone().requires_grad_(True)
    x2 = x.clone().requires_grad_(True)
    y1, y2 = ours(x1), theirs(x2)
    torch.testing.assert_close(y1, y2, **ROUTER_FP32)
    weight = torch.randn_like(y1)
    (y1 * weight).sum().backward()
    (y2 * weight).sum().backward()
    torch.testing.assert_close(x1.grad, x2.grad, **ROUTER_FP32)
    pairs = [
        (ours.router.weight, theirs.gate.weight.grad),
        (ours.gate_up, theirs.experts.gate_up_proj.grad),
        (ours.down, theirs.experts.down_proj.grad),
    ]
    if ours.shared is not None:
        shared = theirs.shared_expert
        up = torch.cat([shared.gate_proj.weight.grad, shared.up_proj.weight.grad])
        pairs += [
            (ours.shared.up.weight, up),
            (ours.shared.down.weight, shared.down_proj.weight.grad),
        ]
        pairs.append((ours.shared_gate.weight, theirs.shared_expert_gate.weight.grad))
    for mine, other_grad in pairs:
        torch.testing.assert_close(mine.grad, other_grad, **ROUTER_FP32)


def _from_block(block: torch.nn.Module) -> MixtureOfExperts:
    flat = options_from_block(block)
    record = MoEOptions(**{k.removeprefix("moe_"): v for k, v in flat.items()})
    return load_block(SPEC.factory(record, HIDDEN)[0].double(), block)


def test_equals_mixtral_block() -> None:
    tf = pytest.importorskip("transformers")
    from transformers.models.mixtral.modeling_mixtral import MixtralSparseMoeBlock

    config = tf.MixtralConfig(
        hidden_size=HIDDEN, intermediate_size=7, num_local_experts=5, num_experts_per_tok=2
    )
    config._experts_implementation = "eager"
    block = randomize(MixtralSparseMoeBlock(config).double(), seed=3)
    _compare(_from_block(block), block, tokens(2, 13))


@pytest.mark.parametrize("normalize", [False, True])
def test_equals_qwen2_moe_block_with_shared_expert(normalize: bool) -> None:
    tf = pytest.importorskip("transformers")
    from transformers.models.qwen2_moe.modeling_qwen2_moe import Qwen2MoeSparseMoeBlock

    config = tf.Qwen2MoeConfig(
        hidden_size=HIDDEN,
        moe_intermediate_size=5,
        shared_expert_intermediate_size=9,
        num_experts=6,
        num_experts_per_tok=3,
        norm_topk_prob=normalize,
    )
    config._experts_implementation = "eager"
    block = randomize(Qwen2MoeSparseMoeBlock(config).double(), seed=4)
    ours = _from_block(block)
    assert ours.shared is not None and ours.shared_gate is not None
    assert ours.normalize_top_k is normalize
    _compare(ours, block, tokens(2, 13))


# ---------------------------------------------------------------- options
@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"moe_top_k": 9}, "moe_top_k.*at most moe_num_experts"),
        ({"moe_top_k": 1}, "moe_normalize_top_k=False"),
        ({"moe_shared_expert_gate": True}, "moe_shared_expert_size"),
        ({"moe_router": "softmx"}, "softmax"),
        ({"moe_aux_loss_coef": -1.0}, "moe_aux_loss_coef"),
    ],
)
def test_bad_options(options: dict, match: str) -> None:
    with pytest.raises(hybridzoo.OptionError, match=match):
        hybridzoo.build("E", embed_dim=4, hidden_size=4, **options)


def test_scale_options_follow_the_width() -> None:
    scaled = SPEC.scale_options(MoEOptions(shared_expert_size=3), 64)
    assert (scaled.expert_size, scaled.shared_expert_size) == (128, 128)
    assert SPEC.scale_options(MoEOptions(), 64).shared_expert_size == 0
    assert attrs.evolve(scaled, expert_size=512) == MoEOptions(shared_expert_size=128)

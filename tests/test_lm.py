"""HybridLM: building, exact counts, the loss, the three modes on token ids, save/load, errors."""

from __future__ import annotations

import json
import warnings

import pytest
import torch
from lm_helpers import HYBRID, PATTERNS, stepped, tiny_lm, tiny_options, tokens

import hybridzoo
from hybridzoo import (
    CheckpointError,
    ConfigError,
    HybridLM,
    HybridModel,
    LMConfig,
    OptionError,
    ShapeError,
    StateError,
)
from hybridzoo.lm.model import lm_cross_entropy


def _unique_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in {id(p): p for p in module.parameters()}.values())


@pytest.mark.parametrize(
    ("pattern", "extra"),
    [
        ("M A", {}),
        ("M A", {"tie_embeddings": False}),
        ("M A", {"tie_embeddings": False, "embed_dim": 12}),
        ("S E F", {"shared_layers": {"ffn": [1]}}),
        (HYBRID, {"norm": "rmsnorm"}),
    ],
)
def test_exact_param_count_without_building(pattern, extra) -> None:
    options = {**tiny_options(pattern), **extra}
    lm = hybridzoo.build_lm(pattern, vocab_size=31, hidden_size=16, **options)
    counted = hybridzoo.lm_param_count(pattern, vocab_size=31, hidden_size=16, **options)
    assert lm.param_count() == _unique_params(lm) == counted == lm.config.param_count()
    options.pop("tie_embeddings", None)
    backbone = hybridzoo.param_count(pattern, hidden_size=16, **options)
    head = 0 if lm.tied else 31 * 16
    assert counted == backbone + 31 * lm.config.embed_dim + head


def test_the_count_takes_what_build_lm_takes_and_a_config_alone() -> None:
    import inspect

    build, count = (
        inspect.signature(hybridzoo.build_lm),
        inspect.signature(hybridzoo.lm_param_count),
    )
    assert list(count.parameters) == list(build.parameters)
    config = hybridzoo.LMConfig.create("F", vocab_size=10, hidden_size=8)
    assert hybridzoo.lm_param_count(config) == hybridzoo.build_lm(config).param_count()
    for given in ({"hidden_size": 9}, {"tie_embeddings": False}, {"max_positions": 4}):
        with pytest.raises(OptionError, match="lm_param_count\\(config\\) takes no other argum"):
            hybridzoo.lm_param_count(config, **given)
        with pytest.raises(OptionError, match="build_lm\\(config\\) takes no other arguments"):
            hybridzoo.build_lm(config, **given)
    with pytest.raises(OptionError, match="needs vocab_size"):
        hybridzoo.lm_param_count("F", hidden_size=8)


def test_the_tied_head_is_the_embedding_matrix() -> None:
    lm = tiny_lm("M F")
    assert lm.tied and lm.head is None
    assert sum(1 for p in lm.parameters() if p.shape == (23, 16)) == 1
    logits = lm(torch.zeros(1, 1, dtype=torch.int64))
    logits[0, 0, 5].backward()  # only token 0 was embedded: row 5 is reached through the head
    assert lm.embedding.weight.grad[5].abs().sum() > 0
    untied = tiny_lm("M F", tie_embeddings=False)
    assert untied.head is not None and untied.head.weight.shape == (23, 16)


@pytest.mark.parametrize("pattern", PATTERNS)
def test_step_and_chunked_prefill_equal_forward(pattern: str) -> None:
    lm = tiny_lm(pattern)
    ids = tokens(2, 9)
    with torch.no_grad():
        full = lm(ids)
        assert full.shape == (2, 9, 23) and full.dtype == torch.float64
        torch.testing.assert_close(stepped(lm, ids), full, rtol=1e-9, atol=1e-10)
        first, state = lm.prefill(ids[:, :4])
        rest, state = lm.prefill(ids[:, 4:5], state)
        last, state = lm.prefill(ids[:, 5:], state, last_only=True)
        torch.testing.assert_close(torch.cat([first, rest], 1), full[:, :5], rtol=1e-9, atol=1e-10)
        torch.testing.assert_close(last, full[:, -1], rtol=1e-9, atol=1e-10)
        assert state.position == 9


def test_loss_is_next_token_cross_entropy_with_ignored_positions() -> None:
    lm = tiny_lm("M G")
    ids = tokens(2, 7)
    logits = lm(ids)
    expected = torch.nn.functional.cross_entropy(
        logits[:, :-1].reshape(-1, 23), ids[:, 1:].flatten()
    )
    torch.testing.assert_close(lm.loss(ids), expected)
    targets = torch.full_like(ids, -100)
    targets[0, 2], targets[1, 5] = 4, 7
    picked = torch.nn.functional.cross_entropy(logits[[0, 1], [2, 5]], torch.tensor([4, 7]))
    torch.testing.assert_close(lm.loss(ids, targets), picked)
    nothing = lm.loss(ids, torch.full_like(ids, -100))
    assert nothing.item() == 0.0 and nothing.requires_grad
    with pytest.raises(ShapeError, match="shape of input_ids"):
        lm.loss(ids, ids[:, :3])


def test_loss_adds_the_auxiliary_losses_of_its_forward() -> None:
    lm = tiny_lm("M E").train()
    ids = tokens(3, 8)
    total = lm.loss(ids)
    aux = hybridzoo.aux_losses(lm)  # read after loss(): the same forward's, already summed in
    assert set(aux) == {"backbone.2.moe.load_balancing", "backbone.2.moe.z_loss"}
    plain = lm.loss(ids, aux=False)
    extra = (total - plain).item()
    assert extra == pytest.approx(sum(aux.values()).item(), rel=1e-9) and extra > 0


def test_cross_entropy_of_low_precision_logits_is_float32() -> None:
    logits = torch.randn(2, 3, 5, dtype=torch.bfloat16)
    loss = lm_cross_entropy(logits, torch.tensor([[1, 2, -100], [0, -100, 4]]))
    assert loss.dtype == torch.float32


def test_save_and_load_round_trip(tmp_path) -> None:
    for lm in (tiny_lm(HYBRID), tiny_lm("M A", tie_embeddings=False, embed_dim=12)):
        lm.save(tmp_path / "lm")
        data = json.loads((tmp_path / "lm" / "config.json").read_text())
        assert data["kind"] == "HybridLM" and data["config"]["vocab_size"] == 23
        for loaded in (hybridzoo.load(tmp_path / "lm"), HybridLM.load(tmp_path / "lm")):
            assert type(loaded) is HybridLM and not loaded.training
            assert loaded.config == lm.config
            ids = tokens(2, 6)
            assert torch.equal(loaded(ids), lm(ids))
    with pytest.raises(CheckpointError, match="holds a HybridLM, not a HybridModel"):
        HybridModel.load(tmp_path / "lm")
    tiny_lm("M").backbone.save(tmp_path / "backbone")
    with pytest.raises(CheckpointError, match="holds a HybridModel, not a HybridLM"):
        HybridLM.load(tmp_path / "backbone")


def test_the_config_round_trips_and_validates() -> None:
    config = LMConfig.create("M A", vocab_size=9, hidden_size=16, **tiny_options("M A"))
    assert LMConfig.from_dict(json.loads(config.to_json())) == config
    assert config.replace(vocab_size=10).vocab_size == 10
    assert config.replace(hidden_size=32).backbone.hidden_size == 32
    assert hybridzoo.build_lm(config).config is config
    with pytest.raises(ConfigError, match="unknown LM config keys"):
        LMConfig.from_dict({**config.to_dict(), "vocab": 3})
    with pytest.raises(ConfigError, match="lm_config_version"):
        LMConfig.from_dict({**config.to_dict(), "lm_config_version": 2})
    with pytest.raises(ConfigError, match="backbone: "):
        LMConfig.from_dict({**config.to_dict(), "backbone": {"pattern": ["nope"], "embed_dim": 4}})


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: hybridzoo.build_lm("M", hidden_size=8), "needs vocab_size"),
        (lambda: hybridzoo.build_lm("M", vocab_size=0), "vocab_size must be an integer >= 1"),
        (lambda: hybridzoo.build_lm("M", vocab_size=True), "vocab_size must be an integer"),
        (lambda: hybridzoo.build_lm("M", vocab_size=4, output="last"), "output must be"),
        (lambda: hybridzoo.build_lm("M", vocab_size=4, embed_dim=8), "tie_embeddings=True"),
        (
            lambda: hybridzoo.build_lm(LMConfig.create("M", vocab_size=4), vocab_size=5),
            "takes no other arguments",
        ),
        (
            lambda: hybridzoo.build_lm("M", vocab_size=4, max_positions=0),
            "max_positions must be an integer >= 1 or None, got 0",
        ),
    ],
)
def test_bad_arguments_are_clear_errors(call, message) -> None:
    with pytest.raises(OptionError, match=message):
        call()


@pytest.mark.parametrize(
    ("ids", "message"),
    [
        (torch.zeros(2, 3), "int64 \\(or int32\\) tensor \\[batch, seq_len\\]"),
        ([[1, 2]], "got a list; a list of prompts goes to generate"),
        (torch.zeros(3, dtype=torch.int64), "shape \\[3\\]"),
        (torch.zeros(2, 0, dtype=torch.int64), "empty sequence"),
        (torch.tensor([[1, 23]]), "token id 23 is out of range for a vocabulary of 23"),
        (torch.tensor([[-1, 2]]), "token id -1 is out of range"),
    ],
)
def test_bad_token_ids_are_shape_errors(ids, message) -> None:
    lm = tiny_lm("M")
    with pytest.raises(ShapeError, match=message):
        lm(ids)


def test_from_backbone_shares_the_backbone_and_refuses_other_modules() -> None:
    backbone = hybridzoo.build(
        "M G", embed_dim=16, hidden_size=16, output="sequence", **tiny_options("M G")
    )
    lm = HybridLM.from_backbone(backbone, 11)
    assert lm.backbone is backbone and lm.config.backbone is backbone.config
    with pytest.raises(ConfigError, match="HybridModel"):
        HybridLM.from_backbone(torch.nn.Linear(2, 2), 11)  # type: ignore[arg-type]
    last = hybridzoo.build("M", embed_dim=16, hidden_size=16, **tiny_options("M"))
    with pytest.raises(ConfigError, match="output='sequence'"):
        HybridLM.from_backbone(last, 11)


def test_weights_of_the_arenas_former_language_model_load() -> None:
    lm = tiny_lm("M F")
    legacy = {
        (f"model.{k[len('backbone.') :]}" if k.startswith("backbone.") else k): v
        for k, v in lm.state_dict().items()
    }
    again = tiny_lm("M F", seed=1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        again.load_state_dict(legacy)
    ids = tokens(1, 5)
    assert torch.equal(again(ids), lm(ids))


def test_the_arenas_language_model_is_a_hybrid_lm_with_learned_positions() -> None:
    from hybridzoo.arena.lm import build_language_model

    torch.manual_seed(0)
    options = tiny_options("M A")
    lm = build_language_model(
        "M A", vocab_size=23, hidden_size=16, positions="learned", max_len=12, **options
    )
    lm = lm.double().eval()
    assert isinstance(lm, HybridLM) and lm.model is lm.backbone and lm.tied
    out = lm.generate(tokens(2, 5), 4)  # prefill, then steps: each at its learned position
    with torch.no_grad():
        assert torch.equal(out[:, 5:], lm(out).argmax(-1)[:, 4:-1])
    with pytest.raises(hybridzoo.StateError, match="learned positions cover 12 tokens"):
        lm.generate(tokens(1, 10), 4)


@pytest.mark.parametrize("extra", [{}, {"max_positions": 6}], ids=["plain", "learned-positions"])
def test_packed_documents_give_the_logits_and_loss_of_each_alone(extra) -> None:
    lm = tiny_lm(HYBRID, **extra)  # 6 learned positions: each document fits, the row does not
    a, b = tokens(1, 5, seed=1), tokens(1, 4, seed=2)
    packed, seq_idx = torch.cat([a, b], 1), torch.tensor([[0] * 5 + [1] * 4])
    with torch.no_grad():
        out = lm(packed, seq_idx=seq_idx)
        torch.testing.assert_close(out, torch.cat([lm(a), lm(b)], 1), rtol=1e-9, atol=1e-10)
        torch.testing.assert_close(lm(packed, cu_seqlens=torch.tensor([0, 5, 9])), out)
        alone = (lm.loss(a, aux=False) * 4 + lm.loss(b, aux=False) * 3) / 7  # 4 + 3 targets
        packed_loss = lm.loss(packed, seq_idx=seq_idx, aux=False)
        torch.testing.assert_close(packed_loss, alone, rtol=1e-9, atol=1e-10)


def test_learned_positions_save_load_and_agree_in_every_mode(tmp_path) -> None:
    lm = tiny_lm("M A", max_positions=12)
    assert lm.position.weight.shape == (12, 16) and lm.config.max_positions == 12
    lm.save(tmp_path / "lm")
    saved = json.loads((tmp_path / "lm" / "config.json").read_text())["config"]
    assert saved["max_positions"] == 12
    loaded = hybridzoo.load(tmp_path / "lm")
    assert type(loaded) is HybridLM and loaded.config == lm.config
    assert torch.equal(loaded.position.weight, lm.position.weight)
    ids = tokens(2, 9)
    with torch.no_grad():
        full = lm(ids)
        assert torch.equal(loaded(ids), full)
        assert not torch.allclose(lm(ids[:, 1:])[:, 0], full[:, 1])  # the positions matter
        for model in (lm, loaded):
            first, state = model.prefill(ids[:, :4])
            rest = stepped(model, ids[:, 4:], state)
            torch.testing.assert_close(torch.cat([first, rest], 1), full, rtol=1e-9, atol=1e-10)
    prompts = [[3, 1, 4, 1, 5], [9], [2, 6]]  # rows at different positions
    assert loaded.generate(prompts, 5) == lm.generate(prompts, 5)


def test_a_position_past_the_learned_table_is_an_error_naming_the_limit() -> None:
    lm = tiny_lm("M A", max_positions=12)
    ids = tokens(2, 13)
    past = r"learned positions cover 12 tokens \(max_positions=12\); position 12 was asked for"
    with torch.no_grad():
        _, state = lm.prefill(ids[:, :9])
        lm.prefill(ids[:, 9:12], state)  # positions 9..11: the end of the table
        with pytest.raises(StateError, match=past):
            lm.prefill(ids[:, 9:13], state)
        _, state = lm.prefill(ids[:, :12])
        with pytest.raises(StateError, match=past):
            lm.step(ids[:, 12], state)
        with pytest.raises(ShapeError, match=past):
            lm(ids)
        with pytest.raises(ShapeError, match=past):  # a packed document of 13 tokens
            lm(torch.cat([ids, ids], 1), seq_idx=torch.tensor([[0] * 13 + [1] * 13] * 2))


def test_learned_positions_are_counted_exactly() -> None:
    options = tiny_options("M A")
    for extra in ({}, {"tie_embeddings": False, "embed_dim": 12}):
        kw = {"vocab_size": 31, "hidden_size": 16, **options, **extra}
        lm = hybridzoo.build_lm("M A", max_positions=10, **kw)
        counted = hybridzoo.lm_param_count("M A", max_positions=10, **kw)
        assert lm.param_count() == _unique_params(lm) == counted == lm.config.param_count()
        assert counted == hybridzoo.lm_param_count("M A", **kw) + 10 * lm.config.embed_dim


def test_max_positions_round_trips_and_a_config_without_it_loads(tmp_path) -> None:
    config = LMConfig.create("M", vocab_size=9, hidden_size=16, max_positions=8)
    assert LMConfig.from_dict(json.loads(config.to_json())) == config
    assert config.replace(hidden_size=32).max_positions == 8
    assert config.replace(max_positions=None) == LMConfig.create("M", vocab_size=9, hidden_size=16)
    with pytest.raises(OptionError, match="max_positions must be an integer >= 1"):
        config.replace(max_positions=0)
    lm = tiny_lm("M")
    lm.save(tmp_path / "old")
    path = tmp_path / "old" / "config.json"
    data = json.loads(path.read_text())
    del data["config"]["max_positions"]  # as written before the field existed
    path.write_text(json.dumps(data))
    loaded = hybridzoo.load(tmp_path / "old")
    assert loaded.config == lm.config and loaded.config.max_positions is None
    assert loaded.position is None and torch.equal(loaded(tokens(1, 5)), lm(tokens(1, 5)))

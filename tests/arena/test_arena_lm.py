"""The arena's language-model wrapper: shapes, weight tying, exact counts, step mode, loss."""

from __future__ import annotations

import pytest
import torch
from lm_helpers import stepped

import hybridzoo
from hybridzoo.arena.lm import (
    LanguageModel,
    build_language_model,
    language_model_param_count,
    masked_loss_and_accuracy,
)

SMALL = {"attention_num_heads": 2, "attention_head_dim": 8, "dropout": 0.0}


def _count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_forward_shape_and_tied_head() -> None:
    lm = build_language_model("AF", vocab_size=32, hidden_size=16, **SMALL)
    tokens = torch.randint(32, (3, 7))
    assert lm(tokens).shape == (3, 7, 32)
    assert lm.tied and lm.head is None
    # tied: the embedding matrix is the only [vocab, hidden] parameter
    assert sum(1 for p in lm.parameters() if p.shape == (32, 16)) == 1
    assert _count(lm) == language_model_param_count("AF", vocab_size=32, hidden_size=16, **SMALL)


@pytest.mark.parametrize(("embed_dim", "tie"), [(16, False), (12, True), (12, False)])
def test_untied_head(embed_dim: int, tie: bool) -> None:
    lm = build_language_model(
        "A", vocab_size=32, hidden_size=16, embed_dim=embed_dim, tie=tie, **SMALL
    )
    assert not lm.tied and lm.head is not None
    assert lm.head.weight.shape == (32, 16)
    assert lm.embedding.weight.shape == (32, embed_dim)
    assert lm(torch.randint(32, (2, 5))).shape == (2, 5, 32)
    expected = language_model_param_count(
        "A", vocab_size=32, hidden_size=16, embed_dim=embed_dim, tie=tie, **SMALL
    )
    assert _count(lm) == expected


def test_tied_gradients_reach_the_embedding_through_the_head() -> None:
    lm = build_language_model("F", vocab_size=8, hidden_size=8, dropout=0.0)
    logits = lm(torch.zeros(1, 1, dtype=torch.int64))
    logits[0, 0, 5].backward()
    # only token 0 was embedded; row 5 gets a gradient through the tied head alone
    assert lm.embedding.weight.grad[5].abs().sum() > 0


@pytest.mark.parametrize("pattern", ["AF", "R"])
def test_step_mode_equals_forward(pattern: str) -> None:
    torch.manual_seed(0)
    options = SMALL if "A" in pattern else {"rwkv_head_size": 8, "dropout": 0.0}
    lm = build_language_model(pattern, vocab_size=16, hidden_size=16, **options).double().eval()
    tokens = torch.randint(16, (2, 9))
    full = lm(tokens)  # [B, L, V]
    assert torch.allclose(stepped(lm, tokens), full, atol=1e-8)
    generated = lm.generate(tokens[:, :4], 3)[:, 4:]  # HybridLM.generate: prompt + new
    assert generated.shape == (2, 3)
    assert torch.equal(generated[:, 0], full[:, 3].argmax(-1))


def test_rejects_a_last_output_model_and_bad_vocab() -> None:
    model = hybridzoo.build("F", embed_dim=8, hidden_size=8, output="last")
    with pytest.raises(ValueError, match="output='sequence'"):
        LanguageModel(model, 10)
    seq = hybridzoo.build("F", embed_dim=8, hidden_size=8, output="sequence")
    with pytest.raises(ValueError, match="vocab_size"):
        LanguageModel(seq, 0)
    with pytest.raises(TypeError, match="HybridModel"):
        LanguageModel(torch.nn.Linear(2, 2), 10)


def test_masked_loss_and_accuracy() -> None:
    logits = torch.full((1, 3, 4), -10.0)
    logits[0, 0, 1] = 10.0  # predicts 1
    logits[0, 1, 2] = 10.0  # predicts 2
    logits[0, 2, 3] = 10.0  # predicts 3
    targets = torch.tensor([[1, -100, 0]])
    loss, correct, count = masked_loss_and_accuracy(logits, targets)
    assert int(correct) == 1 and int(count) == 2
    expected = torch.nn.functional.cross_entropy(logits[0, [0, 2]], torch.tensor([1, 0]))
    assert torch.isclose(loss, expected)
    loss, correct, count = masked_loss_and_accuracy(logits, torch.full((1, 3), -100))
    assert float(loss) == 0.0 and int(count) == 0


def test_learned_positions_count_step_and_forward_agree() -> None:
    torch.manual_seed(0)
    options = {**SMALL, "positions": "learned", "max_len": 12}
    lm = build_language_model("AF", vocab_size=16, hidden_size=16, **options).double().eval()
    assert lm.position.weight.shape == (12, 16)
    expected = language_model_param_count("AF", vocab_size=16, hidden_size=16, **options)
    assert _count(lm) == expected == _count(lm.model) + 16 * 16 + 12 * 16
    tokens = torch.randint(16, (2, 9))
    full = lm(tokens)
    # the positions matter: the same tokens shifted by one position give other logits
    assert not torch.allclose(lm(tokens[:, 1:])[:, 0], full[:, 1])
    assert torch.allclose(stepped(lm, tokens), full, atol=1e-8)
    with pytest.raises(hybridzoo.StateError, match="12"):
        stepped(lm, torch.randint(16, (2, 13)))
    with pytest.raises(ValueError, match="max_len"):
        build_language_model("F", vocab_size=8, hidden_size=8, positions="learned")


def test_last_position_readout_decodes_every_position_from_the_last_state() -> None:
    torch.manual_seed(0)
    options = {"readout": "last", "max_len": 6, "dropout": 0.0}
    lm = build_language_model("F", vocab_size=10, hidden_size=8, **options).eval()
    assert not lm.tied
    assert _count(lm) == language_model_param_count("F", vocab_size=10, hidden_size=8, **options)
    tokens = torch.randint(10, (3, 6))
    logits = lm(tokens)
    assert logits.shape == (3, 6, 10)
    # only the last position reaches the decoder: changing an earlier token through a
    # position-wise model ("F") changes nothing
    changed = tokens.clone()
    changed[:, 0] = (changed[:, 0] + 1) % 10
    assert torch.equal(lm(changed), logits)
    with pytest.raises(ValueError, match="causal"):
        lm.step(tokens[:, 0], lm.init_state(3))


def test_learned_positions_save_and_load_as_a_hybrid_lm(tmp_path) -> None:
    torch.manual_seed(0)
    options = {**SMALL, "positions": "learned", "max_len": 12}
    lm = build_language_model("AF", vocab_size=16, hidden_size=16, **options).double().eval()
    lm.save(tmp_path / "lm")
    loaded = hybridzoo.load(tmp_path / "lm")
    assert type(loaded) is hybridzoo.HybridLM and loaded.config == lm.config
    assert loaded.config.max_positions == 12
    tokens = torch.randint(16, (2, 9))
    assert torch.equal(loaded(tokens), lm(tokens))
    assert torch.allclose(stepped(loaded, tokens), lm(tokens), atol=1e-8)
    prompts = [[1, 2, 3, 4], [5], [6, 7]]  # rows at different positions in one state
    together = lm.generate(prompts, 4)
    assert together == [lm.generate([p], 4)[0] for p in prompts] == loaded.generate(prompts, 4)


def test_the_last_readout_refuses_to_save_before_writing_anything(tmp_path) -> None:
    lm = build_language_model("F", vocab_size=10, hidden_size=8, readout="last", max_len=6)
    with pytest.raises(hybridzoo.CheckpointError, match="readout='last' cannot be saved") as info:
        lm.save(tmp_path / "lm")
    assert "state_dict" in str(info.value) and "arena's checkpoints" in str(info.value)
    assert not (tmp_path / "lm").exists() and not list(tmp_path.iterdir())


def test_the_count_takes_what_the_builder_takes() -> None:
    import inspect

    build = inspect.signature(build_language_model)
    assert inspect.signature(language_model_param_count).parameters == build.parameters
    with pytest.raises(TypeError, match="vocab_size"):
        language_model_param_count("F", hidden_size=8)
    with pytest.raises(TypeError, match="vocab_size"):
        build_language_model("F", hidden_size=8)

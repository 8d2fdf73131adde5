"""Budget matching: the best width of those tried, what the caller set kept, an unreachable budget
an error; the arena matching through it and reporting FLOPs per token."""

from __future__ import annotations

import pytest

import hybridzoo
from hybridzoo import OptionError, match_budget
from hybridzoo.counting import scale_layer_options

PATTERN = "M S A{window_size=None} E"
SMALL = {"mamba2_head_dim": 16, "moe_num_experts": 4, "seq_len": 64, "max_hidden_size": 256}


def _value(metric: str, hidden: int) -> float:
    """The metric at ``hidden`` computed from scratch (scaled options, then the cost card)."""
    options = scale_layer_options(
        PATTERN, hidden, seq_len=64, user_options={"mamba2_head_dim": 16, "moe_num_experts": 4}
    )
    card = hybridzoo.cost(PATTERN, seq_len=64, hidden_size=hidden, **options)
    values = {"params": card.params, "active_params": card.active_params}
    return {**values, "flops_per_token": card.flops_per_token, "state_bytes": card.state_bytes}[
        metric
    ]


@pytest.mark.parametrize(
    ("metric", "target"),
    [("params", 600_000), ("active_params", 300_000), ("flops_per_token", 9e5),
     ("state_bytes", 250_000)],
)  # fmt: skip
def test_the_match_is_the_closest_width_tried(metric, target):
    match = match_budget(PATTERN, **{metric: target}, **SMALL)
    assert match.achieved == _value(metric, match.hidden_size)
    assert match.relative_error == (match.achieved - target) / target
    every = {h: abs(_value(metric, h) - target) for h in range(8, 257, 8)}
    assert every[match.hidden_size] == min(every.values())
    model = hybridzoo.build(PATTERN, embed_dim=match.hidden_size, **match)
    if metric == "params":
        assert model.param_count() == match.achieved
    assert str(match).startswith(f"hidden_size={match.hidden_size}: {metric}")


def test_an_unreachable_budget_is_an_error_not_a_clip():
    with pytest.raises(
        OptionError, match="out of reach: the smallest width, hidden_size=8, already gives"
    ):
        match_budget(PATTERN, params=10, **SMALL)
    with pytest.raises(
        OptionError, match="the largest width, hidden_size=256 \\(max_hidden_size\\), gives"
    ):
        match_budget(PATTERN, params=10**12, **SMALL)
    with pytest.raises(OptionError, match="one budget, got 2"):
        match_budget(PATTERN, params=1e6, state_bytes=1e5)
    with pytest.raises(OptionError, match="one budget, got 0"):
        match_budget(PATTERN)
    with pytest.raises(OptionError, match="chooses hidden_size"):
        match_budget(PATTERN, params=1e6, hidden_size=64)
    with pytest.raises(OptionError, match="params must be a number > 0"):
        match_budget(PATTERN, params=-1)


def test_what_the_caller_set_is_kept():
    match = match_budget(PATTERN, params=2e6, attention_head_dim=8, **SMALL)
    assert match["attention_head_dim"] == 8 and match["mamba2_head_dim"] == 16
    config = hybridzoo.HybridConfig.create(PATTERN, **match)
    assert config.options_of("attention", 2).window_size is None  # the position's own option
    megatron = match_budget("M-M*-", dialect="megatron", params=1e6, seq_len=64)
    assert megatron["attention_ffn_expand_factor"] == 0  # the notation's meaning, not scaled away


def test_a_language_model_around_the_pattern():
    plain = match_budget(PATTERN, params=2e6, **SMALL)
    lm = match_budget(PATTERN, params=2e6, vocab_size=1000, **SMALL)
    H = lm.hidden_size
    assert lm.achieved == lm.card.params + 1000 * H and lm.hidden_size < plain.hidden_size
    untied = match_budget(PATTERN, params=2e6, vocab_size=1000, tie=False, **SMALL)
    assert untied.achieved == untied.card.params + 2 * 1000 * untied.hidden_size
    flops = match_budget(PATTERN, flops_per_token=2e6, vocab_size=1000, **SMALL)
    assert flops.achieved == flops.card.flops_per_token + 2 * flops.hidden_size * 1000


def test_the_arena_matches_through_it_and_reports_flops_per_token():
    from hybridzoo.arena.budget import match_hidden_size
    from hybridzoo.arena.lm import language_model_param_count
    from hybridzoo.arena.report import COLUMNS
    from hybridzoo.arena.spec import RunSpec

    learned = {"positions": "learned", "max_len": 32}
    hidden, count = match_hidden_size(
        "M A", budget=300_000, vocab_size=64, seq_len=32, lm_options=learned
    )
    options = scale_layer_options("M A", hidden, seq_len=32)
    assert count == language_model_param_count(
        "M A", vocab_size=64, hidden_size=hidden, **options, **learned
    )
    assert abs(count - 300_000) <= min(
        abs(language_model_param_count(
            "M A", vocab_size=64, hidden_size=h, **scale_layer_options("M A", h, seq_len=32),
            **learned) - 300_000)
        for h in range(4, 4097, 4)
    )  # fmt: skip
    with pytest.raises(hybridzoo.ConfigError, match="out of reach"):
        match_hidden_size("M A", budget=10, vocab_size=64, seq_len=32)
    spec = RunSpec(pattern="M A", task="mqar", task_params={"seq_len": 32}, hidden_size=hidden,
                   layer_options=options)  # fmt: skip
    card = hybridzoo.cost("M A", seq_len=32, hidden_size=hidden, **options)
    vocab = spec.make_task().vocab_size
    assert spec.flops_per_token() == card.flops_per_token + 2 * hidden * vocab
    assert ("FLOPs/tok", ">") in COLUMNS

"""HybridLM.generate: greedy equals the forward's argmax, prompts of different lengths as alone,
per-row eos, reproducible sampling, the sampling distribution, and clear errors."""

from __future__ import annotations

import attrs
import pytest
import torch
from lm_helpers import HYBRID, tiny_lm, tokens

import hybridzoo
from hybridzoo import HybridState, OptionError, ShapeError
from hybridzoo.lm.generation import SamplingOptions, collect, iter_generate, next_tokens

PROMPTS = [[3, 1, 4, 1, 5], [9], [2, 6], [5, 3, 5, 8, 9, 7, 9], [2, 6]]

#: hybrids whose layers all batch their states: full attention (a growing cache), a windowed
#: one, the sinusoidal encoding and learned positions (a per-row position)
GENERATORS = [
    pytest.param(HYBRID, None, id="hybrid"),
    pytest.param("A M", {"attention_window_size": None}, id="full-attention"),
    pytest.param("G R K", {"positional_encoding": "sinusoidal"}, id="sinusoidal"),
    pytest.param("M A", {"max_positions": 16}, id="learned-positions"),
]


def _lm(pattern: str, extra: dict | None = None) -> hybridzoo.HybridLM:
    return tiny_lm(pattern, **(extra or {}))


@pytest.mark.parametrize(("pattern", "extra"), GENERATORS)
def test_greedy_is_the_argmax_of_the_forward_at_every_position(pattern, extra) -> None:
    lm = _lm(pattern, extra)
    prompts = tokens(3, 4)
    out = lm.generate(prompts, 7)
    assert out.shape == (3, 11) and out.dtype == prompts.dtype
    assert torch.equal(out[:, :4], prompts)
    with torch.no_grad():
        predicted = lm(out).argmax(-1)  # [B, L]
    assert torch.equal(out[:, 4:], predicted[:, 3:-1])


@pytest.mark.parametrize(("pattern", "extra"), GENERATORS)
def test_prompts_of_different_lengths_continue_as_alone(pattern, extra) -> None:
    lm = _lm(pattern, extra)
    together = lm.generate(PROMPTS, 6)
    alone = [lm.generate([p], 6)[0] for p in PROMPTS]
    assert together == alone
    for prompt, out in zip(PROMPTS, together, strict=True):
        assert out[: len(prompt)] == prompt and len(out) == len(prompt) + 6
        as_tensor = lm.generate(torch.tensor([prompt]), 6)
        assert as_tensor[0].tolist() == out


def _cut(prompt: list[int], full: list[int], eos: set[int]) -> list[int]:
    continuation = full[len(prompt) :]
    ends = [i for i, t in enumerate(continuation) if t in eos]
    return prompt + continuation[: ends[0] + 1 if ends else len(continuation)]


def test_each_row_stops_at_its_eos() -> None:
    lm = _lm(HYBRID)
    free = lm.generate(PROMPTS, 8)
    eos = free[0][len(PROMPTS[0]) + 2]  # the third token of the first row's continuation
    stopped = lm.generate(PROMPTS, 8, eos_token_id=eos)
    assert stopped == [_cut(p, f, {eos}) for p, f in zip(PROMPTS, free, strict=True)]
    assert len(stopped[0]) == len(PROMPTS[0]) + 3
    both = {eos, free[1][-1]}
    several = lm.generate(PROMPTS, 8, eos_token_id=sorted(both))
    assert several == [_cut(p, f, both) for p, f in zip(PROMPTS, free, strict=True)]
    assert len(several[1]) <= len(free[1])
    batch = torch.tensor([PROMPTS[0], PROMPTS[3][:5]])
    filled = lm.generate(batch, 8, eos_token_id=eos)
    row = filled[0].tolist()
    assert row[: len(stopped[0])] == stopped[0] and set(row[len(stopped[0]) :]) == {eos}
    second = _cut(PROMPTS[3][:5], lm.generate([PROMPTS[3][:5]], 8)[0], {eos})
    assert filled[1].tolist() == second + [eos] * (13 - len(second))


def test_no_new_tokens_returns_the_prompts() -> None:
    lm = _lm("M")
    assert lm.generate(PROMPTS, 0) == PROMPTS
    prompts = tokens(2, 3)
    assert torch.equal(lm.generate(prompts, 0), prompts)


def test_sampling_is_reproducible_with_a_generator() -> None:
    lm = _lm(HYBRID)
    kwargs = {"do_sample": True, "temperature": 0.8, "top_k": 10, "top_p": 0.95}
    first = lm.generate(PROMPTS, 10, generator=torch.Generator().manual_seed(3), **kwargs)
    again = lm.generate(PROMPTS, 10, generator=torch.Generator().manual_seed(3), **kwargs)
    other = lm.generate(PROMPTS, 10, generator=torch.Generator().manual_seed(4), **kwargs)
    assert first == again and first != other
    greedy = lm.generate(PROMPTS, 10)
    assert lm.generate(PROMPTS, 10, do_sample=True, top_k=1) == greedy
    assert lm.generate(PROMPTS, 10, do_sample=True, top_p=1e-9) == greedy


def _support(logits: list[float], draws: int = 400, **options) -> set[int]:
    rows = torch.tensor([logits] * draws)
    sampled = next_tokens(
        rows, SamplingOptions(do_sample=True, generator=torch.Generator().manual_seed(0), **options)
    )
    return set(sampled.tolist())


def test_top_k_and_top_p_restrict_the_sampled_ids() -> None:
    logits = torch.tensor([0.5, 0.3, 0.15, 0.05]).log().tolist()
    assert _support(logits) == {0, 1, 2, 3}
    assert _support(logits, top_k=2) == {0, 1}
    assert _support(logits, top_p=0.5) == {0}  # id 0 alone reaches 0.5
    assert _support(logits, top_p=0.75) == {0, 1}  # 0.5 < 0.75 <= 0.8
    assert _support(logits, top_p=0.81) == {0, 1, 2}
    assert _support(logits, top_k=3, top_p=0.9) == {0, 1, 2}


def test_temperature_sharpens_the_distribution() -> None:
    logits = torch.tensor([[1.0, 0.0]] * 4000)
    for temperature, p0 in ((1.0, 0.7311), (0.5, 0.8808), (2.0, 0.6225)):
        options = SamplingOptions(
            do_sample=True, temperature=temperature, generator=torch.Generator().manual_seed(1)
        )
        share = (next_tokens(logits, options) == 0).double().mean().item()
        assert share == pytest.approx(p0, abs=0.03)


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"temperature": 0.5}, OptionError, "only apply to sampling: pass do_sample=True"),
        ({"do_sample": True, "temperature": 0}, OptionError, "temperature must be"),
        ({"do_sample": True, "top_k": 0}, OptionError, "top_k must be an integer >= 1"),
        ({"do_sample": True, "top_p": 1.5}, OptionError, "top_p must be a number in"),
        ({"do_sample": True, "generator": 3}, OptionError, "generator must be a torch.Generator"),
        ({"do_sample": "yes"}, OptionError, "do_sample must be True or False"),
        ({"eos_token_id": 23}, OptionError, "eos_token_id must be a token id in 0..22"),
        ({"max_new_tokens": -1}, OptionError, "max_new_tokens must be an integer >= 0"),
        ({"prompts": [[1], []]}, ShapeError, "prompt 1 must be a non-empty list"),
        ({"prompts": [[1, 99]]}, ShapeError, "token ids in 0..22"),
        ({"prompts": []}, ShapeError, "at least one prompt"),
        ({"prompts": "abc"}, ShapeError, "a \\[batch, length\\] tensor or a list"),
        ({"prompts": torch.zeros(2, 3)}, ShapeError, "integer token ids"),
    ],
)
def test_bad_arguments_are_clear_errors(kwargs, error, message) -> None:
    lm = _lm("M")
    call = {"prompts": PROMPTS, "max_new_tokens": 3, **kwargs}
    with pytest.raises(error, match=message):
        lm.generate(call.pop("prompts"), call.pop("max_new_tokens"), **call)


def test_a_layer_without_batched_state_decodes_its_prompts_one_at_a_time(monkeypatch) -> None:
    """A layer that declares ``batched_state=False``: its states are never concatenated, and
    each prompt gives what it gives alone."""
    mamba = hybridzoo.get_layer("mamba")
    capabilities = attrs.evolve(mamba.capabilities, batched_state=False)
    spec = attrs.evolve(
        mamba, name="solo", symbol="Z", option_prefix="solo", capabilities=capabilities
    )
    with hybridzoo.temporary_layers(spec):
        lm = tiny_lm("Z", solo_state_size=4)
        alone = [lm.generate([p], 5)[0] for p in PROMPTS]
        with monkeypatch.context() as patch:
            patch.setattr(HybridState, "cat", _never)
            assert lm.generate(PROMPTS, 5) == alone


def _never(states):
    raise AssertionError("states were concatenated")


def test_iter_generate_yields_the_steps_of_generate() -> None:
    lm = _lm(HYBRID)
    free = lm.generate(PROMPTS, 4)
    eos = free[1][1]  # the first new token of prompt 1: it stops after one step
    steps = list(iter_generate(lm, PROMPTS, 4, eos_token_id=eos))
    assert steps[0].rows == [0, 1, 2, 3, 4] and 1 not in steps[1].rows
    assert [len(s.rows) for s in steps] == [len(s.tokens) for s in steps]
    assert collect(PROMPTS, steps, 4) == lm.generate(PROMPTS, 4, eos_token_id=eos)
    with pytest.raises(OptionError, match="'tempreature'. Did you mean 'temperature'"):
        iter_generate(lm, PROMPTS, 4, tempreature=0.5)

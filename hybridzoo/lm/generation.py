"""Decoding a :class:`~hybridzoo.HybridLM`: greedy or sampled, per-row eos, prompts of any
lengths.

Prompts of different lengths are never padded: the prompts of each length are prefilled
together (rows of one length need no padding), their states are concatenated
(:meth:`HybridState.cat`: each row keeps its own position) and the rows step as one batch. A
row that emits its eos leaves the batch (:meth:`HybridState.select`). So every layer sees each
prompt exactly as it would alone, and a continuation is the one the prompt gets alone (greedy
decoding: the same tokens; rounding aside, the same logits). A model with a layer whose state
cannot be batched this way (``Capabilities(batched_state=False)``) decodes its prompts one
after the other instead.

Greedy decoding picks ``argmax`` (the lowest id on a tie): the greedy continuation equals the
argmax of the full forward over the output at every generated position. Sampling draws from
``softmax(logits / temperature)``, restricted to the ``top_k`` most likely ids and then to the
smallest set whose probability reaches ``top_p`` (the most likely id always kept); a
``torch.Generator`` makes it reproducible.

:func:`iter_generate` yields one step at a time (the command line draws its progress bar from
it; :func:`collect` assembles what :func:`generate` returns); :func:`generate` is the library
call, with no progress output.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

import attrs
import torch

from hybridzoo.errors import OptionError, ShapeError, did_you_mean
from hybridzoo.state import HybridState
from hybridzoo.validate import is_integer, is_real

if TYPE_CHECKING:  # pragma: no cover
    from hybridzoo.lm.model import HybridLM

__all__ = [
    "GenerationStep",
    "SamplingOptions",
    "collect",
    "generate",
    "iter_generate",
    "next_tokens",
]


@attrs.frozen
class SamplingOptions:
    """How the next token is chosen (validated by :func:`sampling_options`)."""

    do_sample: bool = False
    temperature: float = 1.0
    top_k: int | None = None
    top_p: float | None = None
    generator: torch.Generator | None = None


def sampling_options(
    *,
    do_sample: Any,
    temperature: Any,
    top_k: Any,
    top_p: Any,
    generator: Any,
    vocab_size: int,
) -> SamplingOptions:
    """Check the sampling arguments; a setting that greedy decoding would ignore is an error."""
    problems = []
    if not isinstance(do_sample, bool):
        problems.append(f"do_sample must be True or False, got {do_sample!r}")
    if not (is_real(temperature) and math.isfinite(temperature) and temperature > 0):
        problems.append(f"temperature must be a finite number > 0, got {temperature!r}")
    if top_k is not None and not (is_integer(top_k) and top_k >= 1):
        problems.append(f"top_k must be an integer >= 1 or None, got {top_k!r}")
    if top_p is not None and not (is_real(top_p) and 0 < top_p <= 1):
        problems.append(f"top_p must be a number in (0, 1] or None, got {top_p!r}")
    if generator is not None and not isinstance(generator, torch.Generator):
        problems.append(f"generator must be a torch.Generator or None, got {generator!r}")
    if problems:
        raise OptionError(problems)
    if not do_sample:
        given = [
            f"{name}={value!r}"
            for name, value, default in (
                ("temperature", temperature, 1.0),
                ("top_k", top_k, None),
                ("top_p", top_p, None),
            )
            if value != default
        ]
        if given:
            raise OptionError(
                f"{', '.join(given)} only apply to sampling: pass do_sample=True (greedy "
                "decoding takes the most likely token)"
            )
    top_k = None if top_k is None else min(int(top_k), vocab_size)
    return SamplingOptions(do_sample, float(temperature), top_k, top_p, generator)


def next_tokens(logits: torch.Tensor, options: SamplingOptions) -> torch.Tensor:
    """The next token of each row from ``logits [B, V]``: ``[B]`` int64."""
    if not options.do_sample:
        return logits.argmax(dim=-1)
    scores = logits.to(torch.promote_types(logits.dtype, torch.float32)) / options.temperature
    if options.top_k is not None and options.top_k < scores.shape[-1]:
        kth = scores.topk(options.top_k, dim=-1).values[:, -1:]  # [B, 1]
        scores = scores.masked_fill(scores < kth, -math.inf)
    if options.top_p is not None and options.top_p < 1:
        ordered, order = scores.sort(dim=-1, descending=True)
        probs = ordered.softmax(dim=-1)
        before = probs.cumsum(dim=-1) - probs  # the mass of the more likely ids
        drop = before >= options.top_p  # the first id is never dropped
        scores = scores.scatter(-1, order, ordered.masked_fill(drop, -math.inf))
    probs = scores.softmax(dim=-1)
    generator = options.generator
    if generator is not None and generator.device != probs.device:
        raise OptionError(
            f"the generator is on {generator.device} but the model on {probs.device}: make it "
            f"with torch.Generator(device={str(probs.device)!r})"
        )
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)


def _eos_ids(eos_token_id: Any, vocab_size: int) -> list[int]:
    values = [] if eos_token_id is None else eos_token_id
    if is_integer(values):
        values = [values]
    if not isinstance(values, Sequence) or not all(
        is_integer(v) and 0 <= v < vocab_size for v in values
    ):
        raise OptionError(
            f"eos_token_id must be a token id in 0..{vocab_size - 1}, a list of them or None, "
            f"got {eos_token_id!r}"
        )
    return [int(v) for v in values]


def _prompt_list(prompts: Any, vocab_size: int) -> list[list[int]]:
    out = []
    for i, prompt in enumerate(prompts):
        if isinstance(prompt, torch.Tensor):
            prompt = prompt.tolist() if prompt.dim() == 1 else None
        if (
            not isinstance(prompt, Sequence)
            or isinstance(prompt, str)
            or not prompt
            or not all(is_integer(t) and 0 <= t < vocab_size for t in prompt)
        ):
            raise ShapeError(
                f"prompt {i} must be a non-empty list of token ids in 0..{vocab_size - 1}, got "
                f"{prompt!r:.80}"
            )
        out.append([int(t) for t in prompt])
    if not out:
        raise ShapeError("generate needs at least one prompt, got an empty list")
    return out


@attrs.frozen
class GenerationStep:
    """One step of :func:`iter_generate`: the tokens chosen for the rows still running.

    Attributes:
        rows: the index (in the prompts given) of each prompt still running, before this
            step's eos.
        tokens: ``[len(rows)]`` the token chosen for each of them.
    """

    rows: list[int]
    tokens: torch.Tensor


def _batched_states(
    lm: HybridLM, prompts: list[list[int]], device: torch.device
) -> tuple[torch.Tensor, HybridState]:
    """Prefill the prompts of each length together; the last logits ``[B, V]`` and the state
    of every prompt, in the prompts' order."""
    by_length: dict[int, list[int]] = {}
    for i, prompt in enumerate(prompts):
        by_length.setdefault(len(prompt), []).append(i)
    logits, states, order = [], [], []
    for rows in by_length.values():
        ids = torch.tensor([prompts[i] for i in rows], dtype=torch.int64, device=device)
        last, state = lm.prefill(ids, last_only=True)
        logits.append(last)
        states.append(state)
        order.extend(rows)
    if len(states) == 1:
        return logits[0], states[0]
    back = torch.empty(len(order), dtype=torch.int64)
    back[torch.tensor(order)] = torch.arange(len(order))  # original index -> row
    return torch.cat(logits).index_select(0, back.to(device)), HybridState.cat(states).select(back)


def _decode(
    lm: HybridLM,
    prompts: list[list[int]],
    max_new_tokens: int,
    options: SamplingOptions,
    eos: list[int],
) -> Iterator[GenerationStep]:
    """Decode ``prompts`` (checked token lists) together, one :class:`GenerationStep` per new
    token (rows numbered in ``prompts``); a row stops after its eos or ``max_new_tokens``."""
    device = lm.embedding.weight.device
    logits, state = _batched_states(lm, prompts, device)
    rows = list(range(len(prompts)))
    eos_ids = torch.tensor(eos, dtype=torch.int64, device=device)
    for n in range(max_new_tokens):
        tokens = next_tokens(logits, options)
        yield GenerationStep(rows, tokens)
        if n == max_new_tokens - 1:
            return
        if eos:
            running = ~torch.isin(tokens, eos_ids)
            if not bool(running.all()):
                if not bool(running.any()):
                    return
                rows = [r for r, keep in zip(rows, running.tolist(), strict=True) if keep]
                state, tokens = state.select(running), tokens[running]
        logits, state = lm.step(tokens, state)


def _batchable(lm: HybridLM) -> bool:
    """Every layer's step state can be batched (``Capabilities.batched_state``)."""
    blocks = [*lm.backbone.blocks, *lm.backbone.shared.values()]
    return all(block.capabilities.batched_state for block in blocks)


@attrs.frozen
class _Request:
    """The checked arguments of one :func:`generate` call."""

    prompts: list[list[int]]
    max_new_tokens: int
    options: SamplingOptions
    eos: list[int]


def _request(lm: HybridLM, prompts: Any, max_new_tokens: Any, **sampling: Any) -> _Request:
    vocab = lm.vocab_size
    eos = _eos_ids(sampling.pop("eos_token_id"), vocab)
    options = sampling_options(vocab_size=vocab, **sampling)
    if not is_integer(max_new_tokens) or max_new_tokens < 0:
        raise OptionError(f"max_new_tokens must be an integer >= 0, got {max_new_tokens!r}")
    if isinstance(prompts, torch.Tensor):
        if prompts.dim() != 2 or prompts.shape[1] < 1 or prompts.dtype.is_floating_point:
            raise ShapeError(
                f"prompts as a tensor must be integer token ids [batch, length >= 1], got shape "
                f"{list(prompts.shape)} ({prompts.dtype}); prompts of different lengths go in a "
                "list of token lists"
            )
    elif not isinstance(prompts, Sequence) or isinstance(prompts, str):
        raise ShapeError(
            f"prompts must be a [batch, length] tensor or a list of token lists, got "
            f"{type(prompts).__name__}"
        )
    return _Request(_prompt_list(prompts, vocab), int(max_new_tokens), options, eos)


def _steps(lm: HybridLM, request: _Request) -> Iterator[GenerationStep]:
    if not request.max_new_tokens:
        return
    listed = request.prompts
    groups = [list(range(len(listed)))] if _batchable(lm) else [[i] for i in range(len(listed))]
    for group in groups:
        subset = [listed[i] for i in group]
        for step in _decode(lm, subset, request.max_new_tokens, request.options, request.eos):
            yield GenerationStep([group[r] for r in step.rows], step.tokens)


def iter_generate(
    lm: HybridLM,
    prompts: torch.Tensor | Sequence[Sequence[int]],
    max_new_tokens: int,
    **options: Any,
) -> Iterator[GenerationStep]:
    """:func:`generate`, one :class:`GenerationStep` at a time: the tokens chosen at each step
    for the prompts still running (``step.rows`` numbers them in ``prompts``), for a progress
    display or streaming; :func:`collect` assembles what :func:`generate` returns from them.

    Args:
        lm, prompts, max_new_tokens: as :func:`generate` takes them.
        **options: the keyword arguments of :func:`generate` (``do_sample``, ``temperature``,
            ``top_k``, ``top_p``, ``eos_token_id``, ``generator``), checked before the first
            step (an unknown name is an :class:`~hybridzoo.OptionError`).
    """
    unknown = sorted(set(options) - set(_GENERATE_OPTIONS))
    if unknown:
        hint = did_you_mean(unknown[0], _GENERATE_OPTIONS)
        raise OptionError(
            f"unknown generation option {unknown[0]!r}.{hint} Valid: {', '.join(_GENERATE_OPTIONS)}"
        )
    request = _request(lm, prompts, max_new_tokens, **{**_GENERATE_OPTIONS, **options})
    return _no_grad(_steps(lm, request))


def _no_grad(steps: Iterator[GenerationStep]) -> Iterator[GenerationStep]:
    while True:
        with torch.no_grad():
            step = next(steps, None)
        if step is None:
            return
        yield step


def collect(
    prompts: torch.Tensor | Sequence[Sequence[int]],
    steps: Iterable[GenerationStep],
    max_new_tokens: int,
) -> torch.Tensor | list[list[int]]:
    """What :func:`generate` returns for ``prompts``, from the steps of :func:`iter_generate`."""
    listed = [p.tolist() if isinstance(p, torch.Tensor) else list(p) for p in prompts]
    new: list[list[int]] = [[] for _ in listed]
    for step in steps:
        for row, token in zip(step.rows, step.tokens.tolist(), strict=True):
            new[row].append(token)
    if not isinstance(prompts, torch.Tensor):
        return [[int(t) for t in p] + n for p, n in zip(listed, new, strict=True)]
    fill = [n + [n[-1]] * (max_new_tokens - len(n)) if n else n for n in new]
    added = torch.tensor(fill, dtype=prompts.dtype).reshape(len(listed), max_new_tokens)
    return torch.cat([prompts, added.to(prompts.device)], dim=1)


def generate(
    lm: HybridLM,
    prompts: torch.Tensor | Sequence[Sequence[int]],
    max_new_tokens: int,
    *,
    do_sample: bool = False,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    eos_token_id: int | Sequence[int] | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor | list[list[int]]:
    """Continue each prompt by up to ``max_new_tokens`` tokens.

    Args:
        lm: the model (in eval mode for deterministic results: step mode warns under dropout).
        prompts: a ``[B, L]`` integer tensor, or a list of token lists (or 1-D tensors) of any
            lengths >= 1.
        max_new_tokens: tokens to add (0 returns the prompts).
        do_sample: sample instead of taking the most likely token.
        temperature, top_k, top_p: the sampling distribution (see the module docstring); only
            with ``do_sample=True``.
        eos_token_id: an id (or a list of ids) that ends a row; it is kept in the output.
        generator: the random generator of the sampling (reproducible draws); greedy decoding
            draws nothing.

    Returns:
        For a tensor, a ``[B, L + max_new_tokens]`` tensor (as transformers returns), a row that
        ended early filled with its eos after it. For a list, a list of token lists: each its
        prompt, then its continuation up to and including its eos.
    """
    request = _request(
        lm,
        prompts,
        max_new_tokens,
        do_sample=do_sample,
        temperature=temperature,
        top_k=top_k,
        top_p=top_p,
        eos_token_id=eos_token_id,
        generator=generator,
    )
    return collect(prompts, _no_grad(_steps(lm, request)), max_new_tokens)


#: the keyword arguments of :func:`generate` and their defaults
_GENERATE_OPTIONS: dict[str, Any] = {
    name: parameter.default
    for name, parameter in inspect.signature(generate).parameters.items()
    if parameter.kind is parameter.KEYWORD_ONLY
}

"""A causal language model around any :class:`hybridzoo.HybridModel` (built with
``output="sequence"``): token embedding → hybrid stack → vocabulary head.

The head shares the embedding matrix (weight tying) when ``tie=True`` and the model's
``embed_dim == hidden_size``; otherwise it is its own ``Linear(hidden_size, vocab_size)`` without
bias. :func:`language_model_param_count` gives the exact count without building anything, from
``hybridzoo.param_count``.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

import hybridzoo
from hybridzoo.arena.tasks import IGNORE_INDEX

EMBEDDING_INIT_STD = 0.02
"""Standard deviation of the token-embedding initialisation (GPT-2's)."""

_BUILD_ONLY_OPTIONS = ("dropout", "positional_encoding")
"""Options of ``hybridzoo.build`` that change no parameter count (not passed to param_count)."""


def _config_value(model: nn.Module, name: str) -> Any:
    config = getattr(model, "config", None)
    if config is None or not hasattr(config, name):
        raise TypeError(
            f"LanguageModel needs a hybridzoo HybridModel (with model.config.{name}), "
            f"got {type(model).__name__}"
        )
    return getattr(config, name)


class LanguageModel(nn.Module):
    """``tokens [B, L] -> logits [B, L, vocab_size]`` around a sequence-output hybrid model.

    Args:
        model: a ``HybridModel`` built with ``output="sequence"``.
        vocab_size: number of token ids.
        tie: share the embedding matrix with the head when ``embed_dim == hidden_size``.
    """

    def __init__(self, model: nn.Module, vocab_size: int, *, tie: bool = True) -> None:
        super().__init__()
        if isinstance(vocab_size, bool) or not isinstance(vocab_size, int) or vocab_size < 1:
            raise ValueError(f"vocab_size must be a positive integer, got {vocab_size!r}")
        output = _config_value(model, "output")
        if output != "sequence":
            raise ValueError(
                f"LanguageModel needs a model built with output='sequence', got output={output!r}"
            )
        self.embed_dim = int(_config_value(model, "embed_dim"))
        self.hidden_size = int(_config_value(model, "hidden_size"))
        self.vocab_size = vocab_size
        self.embedding = nn.Embedding(vocab_size, self.embed_dim)
        nn.init.normal_(self.embedding.weight, std=EMBEDDING_INIT_STD)
        self.model = model
        self.tied = bool(tie) and self.embed_dim == self.hidden_size
        self.head = None if self.tied else nn.Linear(self.hidden_size, vocab_size, bias=False)

    def _logits(self, hidden: torch.Tensor) -> torch.Tensor:
        if self.head is None:
            return F.linear(hidden, self.embedding.weight)
        return self.head(hidden)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """``tokens [B, L]`` int64 → ``logits [B, L, vocab_size]``."""
        x = self.embedding(tokens)  # [B, L, E]
        hidden = self.model(x)  # [B, L, H]
        return self._logits(hidden)  # [B, L, V]

    def init_state(self, batch_size: int) -> Any:
        """The recurrent state of a fresh sequence, for :meth:`step`."""
        return self.model.init_state(batch_size)

    def step(self, tokens: torch.Tensor, state: Any) -> tuple[torch.Tensor, Any]:
        """One decoding step: ``tokens [B]`` → ``(logits [B, vocab_size], new state)``."""
        hidden, state = self.model.step(self.embedding(tokens), state)  # [B, H]
        return self._logits(hidden), state

    @torch.no_grad()
    def generate(self, prompt: torch.Tensor, num_tokens: int) -> torch.Tensor:
        """Greedy decoding in step mode: ``prompt [B, P]`` → the next ``num_tokens`` ``[B, N]``."""
        if prompt.ndim != 2 or prompt.shape[1] < 1:
            raise ValueError(f"prompt must be [batch, length >= 1], got {tuple(prompt.shape)}")
        state = self.init_state(prompt.shape[0])
        for t in range(prompt.shape[1]):
            logits, state = self.step(prompt[:, t], state)
        out = []
        for _ in range(num_tokens):
            token = logits.argmax(dim=-1)  # [B]
            out.append(token)
            logits, state = self.step(token, state)
        return torch.stack(out, dim=1) if out else prompt.new_zeros(prompt.shape[0], 0)


def split_build_options(options: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Split ``build`` keyword options into (count-relevant options, build-only options)."""
    count = {k: v for k, v in options.items() if k not in _BUILD_ONLY_OPTIONS}
    build_only = {k: v for k, v in options.items() if k in _BUILD_ONLY_OPTIONS}
    return count, build_only


def build_language_model(
    pattern: str | Sequence[str],
    *,
    vocab_size: int,
    hidden_size: int,
    embed_dim: int | None = None,
    tie: bool = True,
    **options: Any,
) -> LanguageModel:
    """Build ``hybridzoo.build(pattern, output="sequence", ...)`` and wrap it in a LanguageModel.

    ``embed_dim`` defaults to ``hidden_size`` (no input projection, tied head). ``options`` are
    passed on to ``hybridzoo.build`` (``dropout``, ``shared_layers``, layer options, ...).
    """
    embed = hidden_size if embed_dim is None else embed_dim
    model = hybridzoo.build(
        pattern, embed_dim=embed, hidden_size=hidden_size, output="sequence", **options
    )
    return LanguageModel(model, vocab_size, tie=tie)


def language_model_param_count(
    pattern: str | Sequence[str],
    *,
    vocab_size: int,
    hidden_size: int,
    embed_dim: int | None = None,
    tie: bool = True,
    **options: Any,
) -> int:
    """Exact parameter count of :func:`build_language_model` with the same arguments (no build)."""
    embed = hidden_size if embed_dim is None else embed_dim
    count_options, _ = split_build_options(options)
    body = hybridzoo.param_count(pattern, embed_dim=embed, hidden_size=hidden_size, **count_options)
    tied = tie and embed == hidden_size
    return body + vocab_size * embed + (0 if tied else vocab_size * hidden_size)


def masked_loss_and_accuracy(
    logits: torch.Tensor, targets: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Cross-entropy mean and correct-prediction count over scored positions.

    ``logits [B, L, V]``, ``targets [B, L]`` (``-100`` = not scored). Returns
    ``(mean loss, number correct, number scored)``; the loss is 0 when nothing is scored.
    """
    flat_logits = logits.reshape(-1, logits.shape[-1])  # [B·L, V]
    flat_targets = targets.reshape(-1)  # [B·L]
    scored = flat_targets != IGNORE_INDEX
    count = scored.sum()
    if int(count) == 0:
        zero = flat_logits.sum() * 0.0
        return zero, count, count
    loss = F.cross_entropy(flat_logits[scored].float(), flat_targets[scored])
    correct = (flat_logits[scored].argmax(dim=-1) == flat_targets[scored]).sum()
    return loss, correct, count


@torch.no_grad()
def step_latency(
    lm: LanguageModel, *, num_tokens: int = 32, warmup: int = 4, batch_size: int = 1
) -> float:
    """Median seconds per token of :meth:`LanguageModel.step` (decoding one sequence)."""
    was_training = lm.training
    lm.eval()
    device = lm.embedding.weight.device
    state = lm.init_state(batch_size)
    token = torch.zeros(batch_size, dtype=torch.int64, device=device)
    times = []
    for i in range(warmup + num_tokens):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        logits, state = lm.step(token, state)
        token = logits.argmax(dim=-1)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        if i >= warmup:
            times.append(time.perf_counter() - start)
    lm.train(was_training)
    times.sort()
    return times[len(times) // 2]

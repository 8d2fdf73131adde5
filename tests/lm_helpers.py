"""Tiny language models of every builtin layer, for the LM, generation and state tests."""

from __future__ import annotations

from typing import Any

import torch

import hybridzoo
from hybridzoo.patterns import resolve_pattern

#: small options of every builtin layer (a layer's options are passed only when it is used)
TINY: dict[str, dict[str, Any]] = {
    "attention": {"attention_num_heads": 2, "attention_head_dim": 8, "attention_window_size": 6},
    "gla": {"gla_num_heads": 2, "gla_head_dim": 8},
    "rwkv": {"rwkv_head_size": 8},
    "mamba": {"mamba_state_size": 4},
    "mamba2": {"mamba2_head_dim": 8, "mamba2_state_size": 4, "mamba2_chunk_size": 4},
    "gated_deltanet": {"gated_deltanet_num_heads": 2, "gated_deltanet_head_dim": 8},
    "moe": {"moe_num_experts": 3, "moe_expert_size": 8},
    "ffn": {"ffn_expand_factor": 1},
    "kan": {"kan_grid_size": 3},
}

#: every builtin layer with a step mode, one hybrid of them all, and full attention
HYBRID = "M S D A G R E F"
PATTERNS = ["M", "S", "D", "A", "G", "R", "E F", "K", HYBRID]


def tiny_options(pattern: str, **overrides: Any) -> dict[str, Any]:
    """The :data:`TINY` options of the layers of ``pattern``, no dropout, then ``overrides``."""
    options: dict[str, Any] = {"dropout": 0.0}
    for name in dict.fromkeys(resolve_pattern(pattern)):
        options.update(TINY.get(name, {}))
    options.update(overrides)
    return options


def tiny_lm(
    pattern: str = HYBRID, *, vocab_size: int = 23, hidden_size: int = 16, seed: int = 0, **kw: Any
) -> hybridzoo.HybridLM:
    """A float64 eval-mode :class:`hybridzoo.HybridLM` of ``pattern`` (seeded)."""
    torch.manual_seed(seed)
    lm = hybridzoo.build_lm(
        pattern, vocab_size=vocab_size, hidden_size=hidden_size, **tiny_options(pattern, **kw)
    )
    return lm.double().eval()


def tokens(batch: int, length: int, *, vocab_size: int = 23, seed: int = 0) -> torch.Tensor:
    """Random token ids ``[batch, length]`` (reproducible)."""
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(vocab_size, (batch, length), generator=generator)


def stepped(model, inputs: torch.Tensor, state=None) -> torch.Tensor:
    """``model.step`` over ``inputs [B, L, ...]`` one position at a time, from ``state`` (a fresh
    one when None, else updated in place): the outputs stacked, ``[B, L, ...]``."""
    state = model.init_state(inputs.shape[0]) if state is None else state
    return torch.stack([model.step(inputs[:, t], state)[0] for t in range(inputs.shape[1])], 1)

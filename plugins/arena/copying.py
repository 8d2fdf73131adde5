"""Selective copying (Mamba, Gu & Dao 2023)."""

from __future__ import annotations

from typing import ClassVar

import attrs
import torch

from hybridzoo.arena import tasks
from hybridzoo.arena.tasks import IGNORE_INDEX, Batch, param
from hybridzoo.errors import ConfigError
from hybridzoo.validate import at_least


@attrs.frozen(kw_only=True)
class SelectiveCopying:
    """Selective copying: copy the data tokens, skipping the noise.

    The first ``seq_len - num_tokens`` positions are the context: ``num_tokens`` data tokens,
    uniform from ``[2, vocab_size)``, at uniformly random (sorted) positions, every other position
    the noise token 0. The last ``num_tokens`` positions each hold the marker token 1; at the
    ``j``-th marker the model must output the ``j``-th data token. Solving it needs content-aware
    filtering (which tokens to keep) and ordered memory of them across variable gaps, which a
    time-invariant recurrence or a convolution cannot do.

    Constraints: ``vocab_size >= 3``, ``num_tokens >= 1``, ``seq_len >= 2·num_tokens``. Chance
    level: ``1/(vocab_size - 2)``.
    """

    name: ClassVar[str] = "selective_copying"
    NOISE: ClassVar[int] = 0
    MARKER: ClassVar[int] = 1
    vocab_size: int = param(16, "vocabulary size (data: V - 2)", at_least(3))
    seq_len: int = param(64, "sequence length L", at_least(2))
    num_tokens: int = param(8, "data tokens to copy (2·tokens <= L)", at_least(1))

    def __attrs_post_init__(self) -> None:
        tasks.check_fields(self)
        if 2 * self.num_tokens > self.seq_len:
            raise ConfigError(
                f"selective copying needs 2·num_tokens <= seq_len (the tokens and their copies "
                f"must fit), got num_tokens={self.num_tokens} with seq_len={self.seq_len}; "
                f"use num_tokens <= {self.seq_len // 2}"
            )

    @property
    def chance_level(self) -> float:
        """``1/(V - 2)``: a uniform guess among the data tokens."""
        return 1.0 / (self.vocab_size - 2)

    @property
    def context_len(self) -> int:
        """Length of the context holding the data tokens, ``seq_len - num_tokens``."""
        return self.seq_len - self.num_tokens

    def generate(self, num_examples: int, seed: int) -> Batch:
        """``num_examples`` examples drawn with a ``torch.Generator`` seeded with ``seed``."""
        gen = tasks.generator(seed, num_examples)
        n, k, ctx = num_examples, self.num_tokens, self.context_len
        data = torch.randint(2, self.vocab_size, (n, k), generator=gen)  # [N, k]
        positions = tasks.sample_distinct(n, 0, ctx, k, gen).sort(dim=1).values  # [N, k]
        inputs = torch.full((n, self.seq_len), self.NOISE, dtype=torch.int64)
        inputs.scatter_(1, positions, data)
        inputs[:, ctx:] = self.MARKER
        targets = torch.full((n, self.seq_len), IGNORE_INDEX, dtype=torch.int64)
        targets[:, ctx:] = data
        return Batch(inputs, targets)

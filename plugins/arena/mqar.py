"""Multi-query associative recall (MQAR), as defined in Zoology (Arora et al., "Zoology:
Measuring and Improving Recall in Efficient Language Models", ICLR 2024)."""

from __future__ import annotations

from typing import Any, ClassVar

import attrs
import torch

from hybridzoo.arena.tasks import (
    IGNORE_INDEX,
    Batch,
    check_fields,
    generator,
    param,
    sample_distinct,
)
from hybridzoo.errors import ConfigError
from hybridzoo.validate import at_least, one_of, positive

FILLERS = ("zero", "random", "random_no_decoy")
"""What the non-query positions of the query region hold (see :class:`MQAR`)."""

ZOOLOGY_PAIRS = {64: 4, 128: 8, 256: 16, 512: 64}
"""Key-value pairs per sequence length in Zoology's MQAR sweeps (ICLR 2024, Figure 2)."""


def power_law_probabilities(space: int, power_a: float) -> torch.Tensor:
    """Zoology's gap distribution over ``space`` query slots: ``p_i ∝ a·i^(a-1)``, ``i = 1..space``.

    ``power_a = 1`` is uniform; smaller values put more mass on small gaps (queries soon after
    the key-value context), as the gaps between repeated bigrams in natural text do.
    """
    i = torch.arange(1, space + 1, dtype=torch.float64)
    p = power_a * i ** (power_a - 1)
    return p / p.sum()


@attrs.frozen(kw_only=True)
class MQAR:
    """Multi-query associative recall (Zoology).

    An example is ``num_kv_pairs`` key-value pairs ``k1 v1 k2 v2 ...`` followed by a query region
    in which every key appears once more, in random order, at positions whose gap from the start
    of the region follows a power law (:func:`power_law_probabilities`). At the position of a
    queried key the model must predict that key's value; only those positions carry a target.
    Keys come from ``[1, vocab_size // 2)`` and values from ``[vocab_size // 2, vocab_size)``
    (disjoint halves), distinct within an example.

    ``filler`` (the other positions of the query region):

    - ``"zero"`` (default): token 0, as in Zoology's ICLR Figure 2 (``random_non_queries=False``);
    - ``"random"``: uniform random tokens, the Based paper's setting (Zoology's
      ``random_non_queries=True``); a random token may be a copy of a queried key placed before
      its query (a decoy: 2.4% of queries at L=64 and 4.6% at L=128 with vocabulary 512), which
      caps a rule that ignores positions below the 0.99 target;
    - ``"random_no_decoy"``: uniform random tokens other than this example's keys.

    Layout (``C = 2·num_kv_pairs``; a query for gap ``g`` sits at position ``C + 2g``)::

        inputs : k1 v1 k2 v2 | .  .  k2 .  .  .  k1 .  ...
        targets: -  -  -  -  | -  -  v2 -  -  -  v1 -  ...

    Constraints (the paper's): ``seq_len`` even, ``vocab_size > seq_len``,
    ``4·num_kv_pairs <= seq_len``, ``power_a > 0``. Chance level: ``1/num_kv_pairs``.
    """

    name: ClassVar[str] = "mqar"
    vocab_size: int = param(512, "vocabulary size V (> L)", at_least(4))
    seq_len: int = param(64, "sequence length L (even)", at_least(4, multiple_of=2))
    num_kv_pairs: int = param(4, "key-value pairs K per example (4·K <= L)", at_least(1))
    power_a: float = param(0.01, "power-law exponent a of the query gaps (1 = uniform)", positive)
    filler: str = param(
        "zero", "non-query positions: zero, random (Based), random_no_decoy", one_of(*FILLERS)
    )

    def __attrs_post_init__(self) -> None:
        check_fields(self)
        if self.vocab_size <= self.seq_len:
            raise ConfigError(
                f"MQAR needs vocab_size > seq_len, got vocab_size={self.vocab_size} "
                f"and seq_len={self.seq_len}"
            )
        if 4 * self.num_kv_pairs > self.seq_len:
            raise ConfigError(
                f"MQAR needs 4·num_kv_pairs <= seq_len (the context and the queries must fit), "
                f"got num_kv_pairs={self.num_kv_pairs} with seq_len={self.seq_len}; "
                f"use num_kv_pairs <= {self.seq_len // 4}"
            )
        if self.num_kv_pairs > self.vocab_size // 2 - 1:
            raise ConfigError(
                f"MQAR needs num_kv_pairs <= vocab_size // 2 - 1 distinct keys, got "
                f"num_kv_pairs={self.num_kv_pairs} with vocab_size={self.vocab_size}"
            )

    @classmethod
    def length_defaults(cls, seq_len: int) -> dict[str, Any]:
        """Zoology's pairs at its lengths (64 → 4, 128 → 8, 256 → 16, 512 → 64), else L/16."""
        return {"num_kv_pairs": ZOOLOGY_PAIRS.get(seq_len, max(1, seq_len // 16))}

    @property
    def chance_level(self) -> float:
        """``1/K``: a model that picks one of the values shown, without recall."""
        return 1.0 / self.num_kv_pairs

    @property
    def context_len(self) -> int:
        """Length of the key-value context, ``2·num_kv_pairs``."""
        return 2 * self.num_kv_pairs

    @property
    def num_query_slots(self) -> int:
        """Number of possible query positions (gaps), ``(seq_len - context_len) // 2``."""
        return (self.seq_len - self.context_len) // 2

    @property
    def targets_per_example(self) -> int:
        """Number of scored positions per example."""
        return self.num_kv_pairs

    def generate(self, num_examples: int, seed: int) -> Batch:
        """``num_examples`` examples drawn with a ``torch.Generator`` seeded with ``seed``."""
        gen = generator(seed, num_examples)
        n, k, vocab, length = num_examples, self.num_kv_pairs, self.vocab_size, self.seq_len
        half, ctx = vocab // 2, self.context_len
        keys = sample_distinct(n, 1, half, k, gen)  # [N, k]
        values = sample_distinct(n, half, vocab, k, gen)  # [N, k]
        p = power_law_probabilities(self.num_query_slots, float(self.power_a))
        gaps = torch.multinomial(p.expand(n, -1), k, replacement=False, generator=gen)  # [N, k]

        inputs = torch.zeros(n, length, dtype=torch.int64)
        targets = torch.full((n, length), IGNORE_INDEX, dtype=torch.int64)
        inputs[:, 0:ctx:2] = keys
        inputs[:, 1:ctx:2] = values
        query_pos = ctx + 2 * gaps  # [N, k]
        inputs.scatter_(1, query_pos, keys)
        targets.scatter_(1, query_pos, values)
        if self.filler != "zero":
            filler = inputs == 0  # only filler positions hold 0 (keys start at 1)
            if self.filler == "random":
                noise = torch.randint(vocab, (n, length), generator=gen)
            else:  # uniform over the tokens that are not this example's keys
                noise = torch.randint(vocab - k, (n, length), generator=gen)
                for key in keys.sort(dim=1).values.unbind(1):  # ascending: shift past each key
                    noise += (noise >= key[:, None]).long()
            inputs[filler] = noise[filler]
        return Batch(inputs, targets)

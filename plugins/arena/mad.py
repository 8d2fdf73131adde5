"""Three tasks of MAD (Poli et al., "Mechanistic Design and Scaling of Hybrid Architectures",
2024; the ``mad-lab`` suite): in-context recall with noise, fuzzy in-context recall, and
compression. Defaults are MAD's baseline settings; all three use MAD's multi-query form.

Differences from MAD, on purpose: the loss is on the recall targets only (MAD trains the recall
tasks on every next token and scores the targets), and examples are exactly ``seq_len`` long.
"""

from __future__ import annotations

import random
from typing import ClassVar

import attrs
import torch

from hybridzoo.arena.tasks import IGNORE_INDEX, Batch, check, check_fields, generator, param
from hybridzoo.errors import ConfigError
from hybridzoo.validate import at_least, in_range


@attrs.frozen(kw_only=True)
class NoisyRecall:
    """In-context recall with noise (MAD): key-value pairs, some replaced by noise, keys repeat.

    The sequence is ``seq_len / 2`` slots of two tokens. Each slot but the last is, with
    probability ``frac_noise``, two noise tokens, else a key and its value: keys are uniform over
    the key vocabulary, and a key's value is drawn once per example and kept. Wherever a key
    appears again, the model must predict its value (the next token); the last slot repeats a key
    shown before. Vocabulary: keys ``[0, S/2)``, values ``[S/2, S)``, noise ``[S, vocab_size)``
    with ``S = vocab_size - noise_vocab_size``. Chance level: one over the number of values.
    """

    name: ClassVar[str] = "noisy_recall"
    vocab_size: int = param(32, "vocabulary size (keys, values and noise)")
    seq_len: int = param(128, "sequence length L (even)", at_least(4, multiple_of=2))
    noise_vocab_size: int = param(16, "noise tokens (taken from the vocabulary)", at_least(0))
    frac_noise: float = param(
        0.2, "probability that a slot is noise", in_range(0.0, 1.0, high_open=True)
    )

    def __attrs_post_init__(self) -> None:
        check_fields(self)
        check(at_least(self.noise_vocab_size + 4), "vocab_size", self.vocab_size)
        if self.frac_noise > 0 and self.noise_vocab_size == 0:
            raise ConfigError("noisy_recall: frac_noise > 0 needs noise_vocab_size >= 1")

    @property
    def num_keys(self) -> int:
        """Size of the key vocabulary."""
        return (self.vocab_size - self.noise_vocab_size) // 2

    @property
    def num_values(self) -> int:
        """Size of the value vocabulary."""
        return self.vocab_size - self.noise_vocab_size - self.num_keys

    @property
    def chance_level(self) -> float:
        """``1/num_values``: a uniform guess among the values, without recall."""
        return 1.0 / self.num_values

    def generate(self, num_examples: int, seed: int) -> Batch:
        """``num_examples`` examples drawn with a ``torch.Generator`` seeded with ``seed``."""
        gen = generator(seed, num_examples)
        n, slots, nk = num_examples, self.seq_len // 2, self.num_keys
        table = torch.randint(nk, nk + self.num_values, (n, nk), generator=gen)  # key -> value
        keys = torch.randint(nk, (n, slots), generator=gen)
        noise = torch.rand(n, slots, generator=gen) < self.frac_noise
        noise[:, -1] = False  # the probe
        keep = torch.randint(slots - 1, (n,), generator=gen)  # one pair before the probe
        noise[torch.arange(n), keep] = False
        # the probe repeats a key shown before: pick one of the earlier non-noise slots
        scores = torch.rand(n, slots - 1, generator=gen).masked_fill(noise[:, :-1], -1.0)
        earlier = scores.argmax(dim=1)
        keys[:, -1] = keys[torch.arange(n), earlier]
        values = table.gather(1, keys)  # [N, slots]
        first = self.vocab_size - self.noise_vocab_size
        top = max(first + 1, self.vocab_size)  # (unused without noise)
        noise_tokens = torch.randint(first, top, (n, slots, 2), generator=gen)
        pairs = torch.stack((keys, values), dim=2)  # [N, slots, 2]
        pairs = torch.where(noise[..., None], noise_tokens, pairs)
        same = (keys[:, :, None] == keys[:, None, :]) & ~noise[:, None, :]  # [N, slot, earlier]
        before = same.tril(diagonal=-1).any(dim=2)  # the key was shown in an earlier slot
        targets = torch.full((n, slots, 2), IGNORE_INDEX, dtype=torch.int64)
        targets[..., 0] = torch.where(before & ~noise, values, IGNORE_INDEX)
        return Batch(pairs.reshape(n, -1), targets.reshape(n, -1))


@attrs.frozen(kw_only=True)
class FuzzyRecall:
    """Fuzzy in-context recall (MAD): keys and values are runs of 1 to ``key_motif`` and
    ``value_motif`` tokens, with no marker between them.

    Pairs ``key value`` follow one another (a key's value is drawn once per example and kept);
    the sequence is left-padded to ``seq_len`` with the pad token ``vocab_size - 1``, and ends
    with a pair whose key was shown before. Wherever a key shown before appears again, the model
    must predict every token of its value. Keys are tuples of distinct tokens from ``[0, S/2)``,
    values from ``[S/2, S)``, ``S = vocab_size - 1``. Chance level: one over the value tokens.
    """

    name: ClassVar[str] = "fuzzy_recall"
    vocab_size: int = param(16, "vocabulary size (keys, values and the pad token)")
    seq_len: int = param(128, "sequence length L")
    key_motif: int = param(3, "longest key, in tokens", at_least(1))
    value_motif: int = param(3, "longest value, in tokens", at_least(1))

    def __attrs_post_init__(self) -> None:
        check_fields(self)
        longest = max(self.key_motif, self.value_motif)
        check(at_least(2 * longest + 1), "vocab_size", self.vocab_size)
        check(at_least(4 * (self.key_motif + self.value_motif)), "seq_len", self.seq_len)

    @property
    def num_values(self) -> int:
        """Number of value tokens."""
        return (self.vocab_size - 1) - (self.vocab_size - 1) // 2

    @property
    def chance_level(self) -> float:
        """``1/num_values``: a uniform guess among the value tokens, without recall."""
        return 1.0 / self.num_values

    def _example(self, rng: random.Random) -> tuple[list[int], list[int]]:
        half, top = (self.vocab_size - 1) // 2, self.vocab_size - 1
        table: dict[tuple[int, ...], tuple[int, ...]] = {}
        tokens: list[int] = []
        targets: list[int] = []
        room = self.seq_len - (self.key_motif + self.value_motif)  # keep space for the probe
        while True:
            key = tuple(rng.sample(range(half), rng.randint(1, self.key_motif)))
            value = table.get(key) or tuple(
                rng.sample(range(half, top), rng.randint(1, self.value_motif))
            )
            if len(tokens) + len(key) + len(value) > room:
                break
            _append(tokens, targets, key, value, scored=key in table)
            table[key] = value
        probe = rng.choice(sorted(table))  # room always holds one pair (see the constraints)
        _append(tokens, targets, probe, table[probe], scored=True)
        pad = self.seq_len - len(tokens)
        return [top] * pad + tokens, [IGNORE_INDEX] * pad + targets

    def generate(self, num_examples: int, seed: int) -> Batch:
        """``num_examples`` examples from a ``random.Random`` seeded with ``seed``."""
        generator(seed, num_examples)  # checks the count
        rng = random.Random(seed)
        rows = [self._example(rng) for _ in range(num_examples)]
        inputs = torch.tensor([r[0] for r in rows], dtype=torch.int64)
        targets = torch.tensor([r[1] for r in rows], dtype=torch.int64)
        return Batch(inputs, targets)


def _append(
    tokens: list[int], targets: list[int], key: tuple, value: tuple, *, scored: bool
) -> None:
    """Add ``key value``; when ``scored``, the last key token and every value token but the
    last carry the next value token as their target."""
    tokens.extend(key + value)
    answer = list(value) if scored else [IGNORE_INDEX] * len(value)
    targets.extend([IGNORE_INDEX] * (len(key) - 1) + answer + [IGNORE_INDEX])


@attrs.frozen(kw_only=True)
class Compression:
    """Compression (MAD): read ``seq_len - 1`` random tokens and a compression token, then
    reconstruct every token from the model's last position alone.

    The model's output at the last position goes through a small decoder (MAD's: the position's
    sinusoidal code added, two Linear-GELU layers, an unembedding) once per position; the loss is
    on the ``seq_len - 1`` data tokens. Tokens are uniform over ``[0, vocab_size - 1)``; the
    compression token is ``vocab_size - 1``. Chance level: ``1/(vocab_size - 1)``.
    """

    name: ClassVar[str] = "compression"
    readout: ClassVar[str] = "last"
    vocab_size: int = param(16, "vocabulary size (data and compression tokens)", at_least(3))
    seq_len: int = param(32, "sequence length L (the last: the compression token)", at_least(2))

    def __attrs_post_init__(self) -> None:
        check_fields(self)

    @property
    def chance_level(self) -> float:
        """``1/(V - 1)``: a uniform guess among the data tokens."""
        return 1.0 / (self.vocab_size - 1)

    def generate(self, num_examples: int, seed: int) -> Batch:
        """``num_examples`` examples drawn with a ``torch.Generator`` seeded with ``seed``."""
        gen = generator(seed, num_examples)
        inputs = torch.randint(self.vocab_size - 1, (num_examples, self.seq_len), generator=gen)
        inputs[:, -1] = self.vocab_size - 1
        targets = inputs.clone()
        targets[:, -1] = IGNORE_INDEX
        return Batch(inputs, targets)

"""Synthetic recall tasks, generated locally and deterministically from a seed.

Every task is a small frozen record of its parameters with a ``generate(num_examples, seed)``
method returning a :class:`Batch` of ``inputs`` and ``targets``, both ``[N, seq_len]`` int64.
``targets[n, t]`` is the token the model must predict *at* position ``t`` (after reading
``inputs[n, : t + 1]``); positions that are not scored hold :data:`IGNORE_INDEX` (-100), the value
``torch.nn.functional.cross_entropy`` skips.

Tasks:

- ``mqar``: multi-query associative recall, exactly as defined in the Zoology paper (Arora et al.,
  "Zoology: Measuring and Improving Recall in Efficient Language Models", 2023).
- ``selective_copying``: the selective-copying task of the Mamba paper (Gu & Dao, 2023): copy the
  few data tokens scattered among noise, in order, after the context.

Seeds: :func:`split_seed` maps ``(seed, split, index)`` to disjoint generator seeds for the
``"train"`` and ``"eval"`` splits, so training batches and held-out examples never share a seed.
"""

from __future__ import annotations

import difflib
from typing import Any, ClassVar, Literal

import attrs
import torch

IGNORE_INDEX = -100
"""Target value of the positions that carry no loss (skipped by ``F.cross_entropy``)."""

Split = Literal["train", "eval"]
_SPLITS: dict[str, int] = {"train": 0, "eval": 1}
_MASK64 = 2**64 - 1
MAX_SEED = 2**63 - 1
"""Largest user seed accepted by :func:`split_seed`."""


@attrs.frozen
class Batch:
    """A batch of examples: ``inputs`` and ``targets``, both ``[N, seq_len]`` int64."""

    inputs: torch.Tensor
    targets: torch.Tensor

    def to(self, device: torch.device | str) -> Batch:
        """The same batch on ``device``."""
        return Batch(self.inputs.to(device), self.targets.to(device))

    def __getitem__(self, index: Any) -> Batch:
        return Batch(self.inputs[index], self.targets[index])

    def __len__(self) -> int:
        return int(self.inputs.shape[0])


def _mix64(value: int) -> int:
    """splitmix64's finaliser: a bijective scramble of a 64-bit integer."""
    value &= _MASK64
    value = ((value ^ (value >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    value = ((value ^ (value >> 27)) * 0x94D049BB133111EB) & _MASK64
    return value ^ (value >> 31)


def split_seed(seed: int, split: Split, index: int) -> int:
    """The generator seed of batch ``index`` of ``split`` (``"train"`` or ``"eval"``).

    ``torch.Generator`` on CPU keeps only 32 bits of a seed, so the result is a 32-bit value: a
    hash of ``(seed, index)`` times two, plus 0 for ``"train"`` and 1 for ``"eval"``. The parity
    makes training and held-out data never share a seed; within a split, different indices give
    different seeds except with negligible probability.
    """
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED:
        raise ValueError(f"seed must be an integer in [0, {MAX_SEED}], got {seed!r}")
    if split not in _SPLITS:
        raise ValueError(f"split must be one of {sorted(_SPLITS)}, got {split!r}")
    if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index <= _MASK64:
        raise ValueError(f"index must be an integer in [0, 2**64), got {index!r}")
    mixed = _mix64(_mix64(seed) ^ index)
    return ((mixed >> 33) << 1) | _SPLITS[split]


def _generator(seed: int) -> torch.Generator:
    gen = torch.Generator(device="cpu")
    gen.manual_seed(seed)
    return gen


def _check_int(name: str, value: Any, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")


def _check_num_examples(num_examples: Any) -> None:
    _check_int("num_examples", num_examples, 1)


def _sample_distinct(
    num_examples: int, low: int, high: int, count: int, gen: torch.Generator
) -> torch.Tensor:
    """``count`` distinct integers from ``[low, high)`` per row, uniformly: ``[N, count]``."""
    scores = torch.rand(num_examples, high - low, generator=gen)
    return scores.argsort(dim=1)[:, :count] + low


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
    """Multi-query associative recall (Zoology, Arora et al. 2023).

    An example is ``num_kv_pairs`` key-value pairs ``k1 v1 k2 v2 ...`` followed by a query region
    in which every key appears once more, in random order, at positions whose gap from the start
    of the region follows a power law (:func:`power_law_probabilities`). At the position of a
    queried key the model must predict that key's value; only those positions carry a target.
    Keys come from ``[1, vocab_size // 2)`` and values from ``[vocab_size // 2, vocab_size)``
    (disjoint halves), distinct within an example. With ``random_non_queries`` every other
    position of the query region holds a uniformly random token (as in Zoology), else token 0.

    Layout (``C = 2·num_kv_pairs``; a query for gap ``g`` sits at position ``C + 2g``)::

        inputs : k1 v1 k2 v2 | .  .  k2 .  .  .  k1 .  ...
        targets: -  -  -  -  | -  -  v2 -  -  -  v1 -  ...

    Constraints (the paper's): ``seq_len`` even, ``vocab_size > seq_len``,
    ``4·num_kv_pairs <= seq_len``, ``power_a > 0``.
    """

    name: ClassVar[str] = "mqar"
    vocab_size: int = attrs.field(default=512, metadata={"help": "vocabulary size V"})
    seq_len: int = attrs.field(default=64, metadata={"help": "sequence length L (even, < V)"})
    num_kv_pairs: int = attrs.field(
        default=4, metadata={"help": "key-value pairs per example (4·pairs <= L)"}
    )
    power_a: float = attrs.field(
        default=0.01, metadata={"help": "power-law exponent a of the query gaps (1 = uniform)"}
    )
    random_non_queries: bool = attrs.field(
        default=True, metadata={"help": "fill non-query positions with random tokens"}
    )

    def __attrs_post_init__(self) -> None:
        _check_int("vocab_size", self.vocab_size, 4)
        _check_int("seq_len", self.seq_len, 4)
        _check_int("num_kv_pairs", self.num_kv_pairs, 1)
        if self.seq_len % 2:
            raise ValueError(f"MQAR seq_len must be even, got seq_len={self.seq_len}")
        if self.vocab_size <= self.seq_len:
            raise ValueError(
                f"MQAR needs vocab_size > seq_len, got vocab_size={self.vocab_size} "
                f"and seq_len={self.seq_len}"
            )
        if 4 * self.num_kv_pairs > self.seq_len:
            raise ValueError(
                f"MQAR needs 4·num_kv_pairs <= seq_len (the context and the queries must fit), "
                f"got num_kv_pairs={self.num_kv_pairs} with seq_len={self.seq_len}; "
                f"use num_kv_pairs <= {self.seq_len // 4}"
            )
        if self.num_kv_pairs > self.vocab_size // 2 - 1:
            raise ValueError(
                f"MQAR needs num_kv_pairs <= vocab_size // 2 - 1 distinct keys, got "
                f"num_kv_pairs={self.num_kv_pairs} with vocab_size={self.vocab_size}"
            )
        if isinstance(self.power_a, bool) or not isinstance(self.power_a, (int, float)):
            raise ValueError(f"MQAR power_a must be a number > 0, got {self.power_a!r}")
        if not self.power_a > 0:
            raise ValueError(f"MQAR power_a must be > 0, got power_a={self.power_a}")

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
        _check_num_examples(num_examples)
        gen = _generator(seed)
        n, k, vocab, length = num_examples, self.num_kv_pairs, self.vocab_size, self.seq_len
        half = vocab // 2
        ctx = self.context_len
        keys = _sample_distinct(n, 1, half, k, gen)  # [N, k]
        values = _sample_distinct(n, half, vocab, k, gen)  # [N, k]
        p = power_law_probabilities(self.num_query_slots, float(self.power_a))
        gaps = torch.multinomial(p.expand(n, -1), k, replacement=False, generator=gen)  # [N, k]

        inputs = torch.zeros(n, length, dtype=torch.int64)
        targets = torch.full((n, length), IGNORE_INDEX, dtype=torch.int64)
        inputs[:, 0:ctx:2] = keys
        inputs[:, 1:ctx:2] = values
        query_pos = ctx + 2 * gaps  # [N, k]
        inputs.scatter_(1, query_pos, keys)
        targets.scatter_(1, query_pos, values)
        if self.random_non_queries:
            noise = torch.randint(vocab, (n, length), generator=gen)
            filler = inputs == 0
            inputs[filler] = noise[filler]
        return Batch(inputs, targets)


@attrs.frozen(kw_only=True)
class SelectiveCopying:
    """Selective copying (Mamba, Gu & Dao 2023): copy the data tokens, skipping the noise.

    The first ``seq_len - num_tokens`` positions are the context: ``num_tokens`` data tokens,
    uniform from ``[2, vocab_size)``, at uniformly random (sorted) positions, every other position
    the noise token 0. The last ``num_tokens`` positions each hold the marker token 1; at the
    ``j``-th marker the model must output the ``j``-th data token. Solving it needs content-aware
    filtering (which tokens to keep) and ordered memory of them across variable gaps, which a
    time-invariant recurrence or a convolution cannot do.

    Constraints: ``vocab_size >= 3``, ``num_tokens >= 1``, ``seq_len >= 2·num_tokens``.
    """

    name: ClassVar[str] = "selective_copying"
    NOISE: ClassVar[int] = 0
    MARKER: ClassVar[int] = 1
    vocab_size: int = attrs.field(default=16, metadata={"help": "vocabulary size (data: V - 2)"})
    seq_len: int = attrs.field(default=64, metadata={"help": "sequence length L"})
    num_tokens: int = attrs.field(
        default=8, metadata={"help": "data tokens to copy (2·tokens <= L)"}
    )

    def __attrs_post_init__(self) -> None:
        _check_int("vocab_size", self.vocab_size, 3)
        _check_int("seq_len", self.seq_len, 2)
        _check_int("num_tokens", self.num_tokens, 1)
        if 2 * self.num_tokens > self.seq_len:
            raise ValueError(
                f"selective copying needs 2·num_tokens <= seq_len (the tokens and their copies "
                f"must fit), got num_tokens={self.num_tokens} with seq_len={self.seq_len}; "
                f"use num_tokens <= {self.seq_len // 2}"
            )

    @property
    def context_len(self) -> int:
        """Length of the context holding the data tokens, ``seq_len - num_tokens``."""
        return self.seq_len - self.num_tokens

    @property
    def targets_per_example(self) -> int:
        """Number of scored positions per example."""
        return self.num_tokens

    def generate(self, num_examples: int, seed: int) -> Batch:
        """``num_examples`` examples drawn with a ``torch.Generator`` seeded with ``seed``."""
        _check_num_examples(num_examples)
        gen = _generator(seed)
        n, k, ctx = num_examples, self.num_tokens, self.context_len
        data = torch.randint(2, self.vocab_size, (n, k), generator=gen)  # [N, k]
        positions = _sample_distinct(n, 0, ctx, k, gen).sort(dim=1).values  # [N, k]
        inputs = torch.full((n, self.seq_len), self.NOISE, dtype=torch.int64)
        inputs.scatter_(1, positions, data)
        inputs[:, ctx:] = self.MARKER
        targets = torch.full((n, self.seq_len), IGNORE_INDEX, dtype=torch.int64)
        targets[:, ctx:] = data
        return Batch(inputs, targets)


TASKS: dict[str, type] = {MQAR.name: MQAR, SelectiveCopying.name: SelectiveCopying}
"""The task registry: name → task record class (its attrs fields are its documented parameters)."""


def register_task(name: str, task_class: type) -> None:
    """Add a task class (an attrs record with ``vocab_size``, ``seq_len`` and ``generate``).

    A name already taken is an error, never a silent overwrite.
    """
    if name in TASKS:
        raise ValueError(f"task {name!r} is already registered (by {TASKS[name].__qualname__})")
    if not attrs.has(task_class) or not callable(getattr(task_class, "generate", None)):
        raise TypeError(
            f"a task must be an attrs class with a generate(num_examples, seed) method, "
            f"got {task_class!r}"
        )
    TASKS[name] = task_class


def task_parameters(name: str) -> dict[str, tuple[Any, str]]:
    """The parameters of task ``name``: ``{parameter: (default, help)}``."""
    cls = _task_class(name)
    return {f.name: (f.default, f.metadata.get("help", "")) for f in attrs.fields(cls)}


def _task_class(name: str) -> type:
    try:
        return TASKS[name]
    except KeyError:
        close = difflib.get_close_matches(str(name), TASKS, n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise ValueError(
            f"unknown task {name!r}; available tasks: {', '.join(sorted(TASKS))}{hint}"
        ) from None


def make_task(name: str, **params: Any) -> Any:
    """Build task ``name`` with ``params``; an unknown parameter is an error naming the valid."""
    cls = _task_class(name)
    valid = {f.name for f in attrs.fields(cls)}
    unknown = sorted(set(params) - valid)
    if unknown:
        raise ValueError(
            f"unknown parameter(s) {', '.join(unknown)} for task {name!r}; "
            f"valid: {', '.join(sorted(valid))}"
        )
    return cls(**params)

"""The arena's task interface: synthetic sequence tasks, generated locally from a seed.

A task is a small frozen ``attrs`` record of its parameters (``vocab_size`` and ``seq_len``
among them, each field documented by ``metadata={"help": ...}``) with:

- ``name`` (a ``ClassVar[str]``): how ``--task`` selects it; parameters are declared with
  :func:`param` (default, help, validator) and checked by :func:`check_fields`;
- ``generate(num_examples, seed) -> Batch``: ``inputs`` and ``targets``, both ``[N, seq_len]``
  int64. ``targets[n, t]`` is the token the model must predict *at* position ``t`` (after reading
  ``inputs[n, : t + 1]``); positions without a target hold :data:`IGNORE_INDEX` (-100);
- ``chance_level`` (a property): the accuracy of a model that has learned nothing from the
  context (for MQAR ``1/K``: guessing one of the ``K`` values shown), which the leaderboard
  prints and compares every model with;
- optionally ``length_defaults(seq_len) -> dict`` (a classmethod): parameter defaults that depend
  on the length (MQAR's pairs grow with it), overridden by explicit parameters;
- optionally ``readout`` (a ``ClassVar[str]``): ``"causal"`` (default: logits at every position
  from the prefix) or ``"last"`` (every target is decoded from the last position's hidden state:
  a compression task).

Tasks are plugins: the entry-point group ``hybridzoo.tasks`` (see :mod:`hybridzoo.arena.plugins`)
or :func:`register_task` at run time. Generation must use its own ``torch.Generator``
(:func:`generator`) so that the same seed gives the same examples and the global RNG is untouched.

Seeds: :func:`split_seed` maps ``(seed, split, index)`` to disjoint generator seeds for the
``"train"`` and ``"eval"`` splits, so training batches and held-out examples never share a seed.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Iterator, Mapping
from typing import Any, Literal

import attrs
import torch

from hybridzoo.errors import ConfigError, did_you_mean
from hybridzoo.packing import IGNORE_INDEX  # the targets that carry no loss
from hybridzoo.validate import Validator, at_least, one_of, plain

__all__ = [
    "IGNORE_INDEX",
    "MAX_SEED",
    "READOUTS",
    "TASKS",
    "Batch",
    "check",
    "check_fields",
    "check_task_class",
    "generator",
    "make_task",
    "param",
    "register_task",
    "sample_distinct",
    "split_seed",
    "task_class",
    "task_parameters",
    "task_params_for",
]

READOUTS = ("causal", "last")
"""How a task's targets are read out of the model (see the module docstring)."""

Split = Literal["train", "eval"]
_SPLITS: dict[str, int] = {"train": 0, "eval": 1}
_MASK64 = 2**64 - 1
MAX_SEED = 2**63 - 1
"""Largest user seed accepted by :func:`split_seed`."""
_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


def check(validator: Validator, name: str, value: Any) -> Any:
    """``value`` (numpy scalars as Python numbers) if ``validator`` accepts it, else a
    :class:`~hybridzoo.ConfigError` (a ``ValueError``) worded as the layer options' errors are:
    ``"seq_len=63: must be an integer >= 4 and a multiple of 2, got 63"``."""
    problem = validator.problem(value)
    if problem is not None:
        raise ConfigError(f"{name}={value!r}: {problem}")
    return plain(value)


def param(default: Any, help: str, validator: Validator | None = None) -> Any:
    """Declare one parameter of a task (or setting) record: its default, a one-line help and the
    :mod:`hybridzoo.validate` check that :func:`check_fields` applies."""
    return attrs.field(default=default, metadata={"help": help, "check": validator})


def check_fields(record: Any) -> None:
    """Check every field of an attrs ``record`` declared with :func:`param` (call it from
    ``__attrs_post_init__``); the first bad value raises :class:`~hybridzoo.ConfigError`."""
    for field in attrs.fields(type(record)):
        validator = field.metadata.get("check")
        if validator is not None:
            check(validator, field.name, getattr(record, field.name))


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

    def packed(self, per_row: int) -> tuple[Batch, torch.Tensor | None]:
        """The examples concatenated ``per_row`` at a time, each its own document, and the
        ``seq_idx`` of the packed rows (``(self, None)`` for ``per_row=1``). The targets stay at
        their positions: none crosses from one example to the next."""
        if per_row == 1:
            return self, None
        from hybridzoo.packing import pack_rows

        inputs, seq_idx = pack_rows(self.inputs, per_row)
        return Batch(inputs, pack_rows(self.targets, per_row)[0]), seq_idx


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
    seed = check(at_least(0), "seed", seed)
    if seed > MAX_SEED:
        raise ConfigError(f"seed must be an integer in [0, {MAX_SEED}], got {seed!r}")
    split = check(one_of(*_SPLITS), "split", split)
    index = check(at_least(0), "index", index)
    if index > _MASK64:
        raise ConfigError(f"index must be an integer in [0, 2**64), got {index!r}")
    mixed = _mix64(_mix64(seed) ^ index)
    return ((mixed >> 33) << 1) | _SPLITS[split]


def generator(seed: int, num_examples: int | None = None) -> torch.Generator:
    """A CPU ``torch.Generator`` seeded with ``seed`` (what every task generates from); with
    ``num_examples``, that count is checked first (an integer >= 1)."""
    if num_examples is not None:
        check(at_least(1), "num_examples", num_examples)
    gen = torch.Generator(device="cpu")
    gen.manual_seed(seed)
    return gen


def sample_distinct(
    num_examples: int, low: int, high: int, count: int, gen: torch.Generator
) -> torch.Tensor:
    """``count`` distinct integers from ``[low, high)`` per row, uniformly: ``[N, count]``."""
    scores = torch.rand(num_examples, high - low, generator=gen)
    return scores.argsort(dim=1)[:, :count] + low


# -- the task table ------------------------------------------------------------------------------


def check_task_class(cls: Any) -> None:
    """Raise :class:`~hybridzoo.PluginError` unless ``cls`` follows the task interface."""
    from hybridzoo.errors import PluginError

    problems = []
    if not (isinstance(cls, type) and attrs.has(cls)):
        raise PluginError(f"a task must be an attrs class, got {cls!r:.80}")
    name = getattr(cls, "name", None)
    if not isinstance(name, str) or not _NAME.match(name):
        problems.append(f"name must be a lower-case identifier, got {name!r}")
    fields = {f.name for f in attrs.fields(cls)}
    problems += [f"no field {f!r}" for f in ("vocab_size", "seq_len") if f not in fields]
    if not callable(getattr(cls, "generate", None)):
        problems.append("no generate(num_examples, seed) method")
    if not isinstance(getattr(cls, "chance_level", None), property):
        problems.append("no chance_level property")
    if getattr(cls, "readout", "causal") not in READOUTS:
        problems.append(f"readout must be one of {READOUTS}, got {cls.readout!r}")
    if problems:
        raise PluginError(f"task class {cls.__qualname__}: " + "; ".join(problems))


def _tasks() -> dict[str, type]:
    from hybridzoo.arena.plugins import get_arena_registry

    return get_arena_registry().tasks()


class _TaskTable(Mapping[str, type]):
    """A live, read-only view of the registered tasks (``name -> class``)."""

    def __getitem__(self, name: str) -> type:
        return _tasks()[name]

    def __iter__(self) -> Iterator[str]:
        return iter(_tasks())

    def __len__(self) -> int:
        return len(_tasks())

    def __repr__(self) -> str:
        return f"<hybridzoo.arena tasks: {', '.join(_tasks())}>"


TASKS: Mapping[str, type] = _TaskTable()
"""The registered tasks, ``name -> task class`` (plugins and run-time registrations)."""


def register_task(name: str, task_class: type, *, replace: bool = False) -> type:
    """Register a task class at run time (``name`` must equal ``task_class.name``).

    A name already taken is an error (:class:`~hybridzoo.PluginConflictError`), never a silent
    overwrite, unless ``replace``. Worker processes (``--jobs``) do not see run-time tasks:
    ship a task as a plugin (entry-point group ``hybridzoo.tasks``) to run it in parallel.
    """
    from hybridzoo.arena.plugins import get_arena_registry

    if getattr(task_class, "name", None) != name:
        raise ConfigError(
            f"register_task({name!r}, ...): the class's name is "
            f"{getattr(task_class, 'name', None)!r}; they must agree"
        )
    return get_arena_registry().register_task(task_class, replace=replace)


def task_class(name: str) -> type:
    """The class of task ``name`` (a :class:`~hybridzoo.ConfigError` with close matches)."""
    tasks = _tasks()
    if name not in tasks:
        raise ConfigError(
            f"unknown task {name!r}.{did_you_mean(str(name), tasks)} Available tasks: "
            f"{', '.join(tasks) or '(none: is an arena plugin installed?)'}"
        )
    return tasks[name]


def task_parameters(name: str) -> dict[str, tuple[Any, str]]:
    """The parameters of task ``name``: ``{parameter: (default, help)}``."""
    cls = task_class(name)
    return {f.name: (f.default, f.metadata.get("help", "")) for f in attrs.fields(cls)}


def task_params_for(name: str, params: Mapping[str, Any], seq_len: int) -> dict[str, Any]:
    """The parameters of task ``name`` at ``seq_len``: its ``length_defaults(seq_len)`` (if it
    has any), then ``params`` (explicit values win), then ``seq_len``."""
    cls = task_class(name)
    defaults = getattr(cls, "length_defaults", None)
    base = dict(defaults(seq_len)) if callable(defaults) else {}
    return {**base, **params, "seq_len": seq_len}


def make_task(name: str, **params: Any) -> Any:
    """Build task ``name`` with ``params``; an unknown parameter is an error naming the valid."""
    cls = task_class(name)
    valid = [f.name for f in attrs.fields(cls)]
    unknown = sorted(set(params) - set(valid))
    if unknown:
        raise ConfigError(
            f"unknown parameter(s) {', '.join(unknown)} for task {name!r}."
            f"{did_you_mean(unknown[0], valid)} Valid: {', '.join(sorted(valid))}"
        )
    try:
        return cls(**params)
    except ConfigError:
        raise
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"task {name!r}: {exc}") from None


def __getattr__(name: str) -> Any:
    # Task classes lived in this module before tasks became plugins: their old names still
    # resolve, with a DeprecationWarning, for one release.
    for cls in _tasks().values():
        if cls.__name__ == name:
            warnings.warn(
                f"hybridzoo.arena.tasks.{name} moved to {cls.__module__}.{name} (the task "
                f"{cls.name!r}); use hybridzoo.arena.task_class({cls.name!r})",
                DeprecationWarning,
                stacklevel=2,
            )
            return cls
    raise AttributeError(f"module 'hybridzoo.arena.tasks' has no attribute {name!r}")

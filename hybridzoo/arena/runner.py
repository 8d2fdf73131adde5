"""Several patterns, several sequence lengths, matched parameter budgets: the arena itself.

:func:`plan_runs` turns an :class:`ArenaConfig` into one :class:`~hybridzoo.arena.train.RunSpec`
per (sequence length, pattern), choosing each pattern's width so that its language model's
parameter count is as close as possible to the budget (counted with ``hybridzoo.param_count``,
nothing built). :func:`run_arena` trains them one after the other and writes ``results.json``,
``leaderboard.txt`` and ``arena.png`` into the output folder (rank 0 only under torchrun).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs
import torch

import hybridzoo
from hybridzoo.arena.defaults import DEFAULT_HIDDEN_SIZE, DEFAULT_PATTERNS
from hybridzoo.arena.distributed import DistContext
from hybridzoo.arena.lm import language_model_param_count
from hybridzoo.arena.tasks import make_task
from hybridzoo.arena.train import RunSpec, TrainSettings, train_run
from hybridzoo.counting import scale_layer_options

RESULTS_FORMAT = 1
RESULTS_FILE = "results.json"
LEADERBOARD_FILE = "leaderboard.txt"
PLOT_FILE = "arena.png"


def _layers_of(pattern: str | Sequence[str]) -> list[str]:
    from hybridzoo.patterns import resolve_pattern

    return list(resolve_pattern(pattern))


def _option_owner(option: str) -> str | None:
    """The registered layer that the option ``<prefix>_<field>`` belongs to, if any."""
    from hybridzoo.options import option_table

    hit = option_table(hybridzoo.get_registry().specs()).get(option)
    return None if hit is None else hit[0].name


def scaled_layer_options(
    pattern: str | Sequence[str],
    hidden_size: int,
    seq_len: int,
    user_options: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Layer options sized to ``hidden_size`` for every layer of ``pattern``, builtin or not:
    each layer's ``scale_options`` (see :func:`hybridzoo.counting.scale_layer_options`), with
    ``user_options`` winning; options of layers absent from ``pattern`` are left out."""
    return scale_layer_options(pattern, hidden_size, seq_len=seq_len, user_options=user_options)


def match_hidden_size(
    pattern: str | Sequence[str],
    *,
    budget: int,
    vocab_size: int,
    seq_len: int,
    user_options: Mapping[str, Any] | None = None,
    multiple: int = 4,
    max_hidden_size: int = 4096,
    embed_dim: int | None = None,
    tie: bool = True,
) -> tuple[int, int]:
    """The width whose language model's parameter count is closest to ``budget``.

    Tries ``hidden_size = multiple, 2·multiple, ...`` with :func:`scaled_layer_options`, counting
    with ``hybridzoo.param_count`` (nothing is built); widths the layers reject are skipped.
    Returns ``(hidden_size, param_count)``.
    """
    best: tuple[int, int] | None = None
    errors: list[str] = []
    for hidden in range(multiple, max_hidden_size + 1, multiple):
        options = scaled_layer_options(pattern, hidden, seq_len, user_options)
        try:
            count = language_model_param_count(
                pattern,
                vocab_size=vocab_size,
                hidden_size=hidden,
                embed_dim=embed_dim,
                tie=tie,
                **options,
            )
        except (ValueError, TypeError, hybridzoo.HybridZooError) as exc:
            errors.append(f"hidden_size={hidden}: {exc}")
            continue
        if best is None or abs(count - budget) < abs(best[1] - budget):
            best = (hidden, count)
        if count > budget:
            break
    if best is None:
        raise ValueError(
            f"no hidden size up to {max_hidden_size} is valid for pattern {pattern!r}: "
            + (errors[-1] if errors else "no candidates")
        )
    return best


def task_params_for(task: str, params: Mapping[str, Any], seq_len: int) -> dict[str, Any]:
    """The task's parameters at ``seq_len``.

    For MQAR without an explicit ``num_kv_pairs`` the number of pairs grows with the length as
    in Zoology (64 → 4, 128 → 8, 256 → 16: ``seq_len // 16``).
    """
    out = {**params, "seq_len": seq_len}
    if task == "mqar" and "num_kv_pairs" not in params:
        out["num_kv_pairs"] = max(1, seq_len // 16)
    return out


@attrs.frozen(kw_only=True)
class ArenaConfig:
    """Everything an arena run needs (the CLI builds one from its options).

    ``task_params`` exclude ``seq_len`` (given by ``seq_lens``). ``budget=None`` uses the
    parameter count of the first pattern at ``hidden_size``; with ``match_budget=False`` every
    pattern is built at ``hidden_size``.
    """

    patterns: tuple[str, ...] = DEFAULT_PATTERNS
    task: str = "mqar"
    task_params: dict[str, Any] = attrs.field(factory=dict, converter=dict)
    seq_lens: tuple[int, ...] = (64,)
    budget: int | None = None
    hidden_size: int = DEFAULT_HIDDEN_SIZE
    match_budget: bool = True
    tie: bool = True
    layer_options: dict[str, Any] = attrs.field(factory=dict, converter=dict)
    train: TrainSettings = attrs.field(factory=TrainSettings)
    out: Path = attrs.field(default=Path("arena-results"), converter=Path)

    def __attrs_post_init__(self) -> None:
        if not self.patterns:
            raise ValueError("patterns must name at least one pattern")
        if not self.seq_lens:
            raise ValueError("seq_lens must hold at least one sequence length")
        if self.budget is not None and (isinstance(self.budget, bool) or self.budget < 1):
            raise ValueError(f"budget must be a positive number of parameters, got {self.budget}")


def plan_runs(config: ArenaConfig) -> tuple[list[RunSpec], int]:
    """One :class:`RunSpec` per (sequence length, pattern), and the budget used.

    Every task and every pattern is checked here, before anything trains.
    """
    first_len = config.seq_lens[0]
    params = {L: task_params_for(config.task, config.task_params, L) for L in config.seq_lens}
    tasks = {L: make_task(config.task, **params[L]) for L in config.seq_lens}
    params = {L: attrs.asdict(tasks[L]) for L in config.seq_lens}  # defaults filled in
    vocab = tasks[first_len].vocab_size
    budget = config.budget
    if budget is None:
        first = config.patterns[0]
        budget = language_model_param_count(
            first,
            vocab_size=vocab,
            hidden_size=config.hidden_size,
            tie=config.tie,
            **scaled_layer_options(first, config.hidden_size, first_len, config.layer_options),
        )
    for key in config.layer_options:
        owner = _option_owner(key)
        if owner is not None and not any(owner in _layers_of(p) for p in config.patterns):
            raise ValueError(
                f"layer option {key!r} belongs to layer {owner!r}, which no pattern uses "
                f"(patterns: {', '.join(config.patterns)})"
            )
    widths: dict[str, int] = {}
    for pattern in config.patterns:
        if config.match_budget:
            widths[pattern], _ = match_hidden_size(
                pattern,
                budget=budget,
                vocab_size=vocab,
                seq_len=first_len,
                user_options=config.layer_options,
                tie=config.tie,
            )
        else:
            widths[pattern] = config.hidden_size
    specs = [
        RunSpec(
            pattern=pattern,
            task=config.task,
            task_params=params[seq_len],
            hidden_size=widths[pattern],
            tie=config.tie,
            layer_options=scaled_layer_options(
                pattern, widths[pattern], seq_len, config.layer_options
            ),
        )
        for seq_len in config.seq_lens
        for pattern in config.patterns
    ]
    for spec in specs:
        spec.param_count()  # validates the options of every pattern now
    return specs, budget


def _payload(
    config: ArenaConfig, budget: int, runs: list[dict[str, Any]], context: DistContext
) -> dict[str, Any]:
    return {
        "format": RESULTS_FORMAT,
        "hybridzoo_version": hybridzoo.__version__,
        "torch_version": torch.__version__,
        "task": config.task,
        "task_params": dict(config.task_params),
        "seq_lens": list(config.seq_lens),
        "patterns": list(config.patterns),
        "budget": budget,
        "settings": attrs.asdict(config.train),
        "world_size": context.world_size,
        "device": str(context.device),
        "runs": runs,
    }


def run_arena(
    config: ArenaConfig,
    *,
    context: DistContext | None = None,
    resume: bool = False,
    progress: bool = True,
    plot: bool = True,
    on_run: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Train every planned run and write the results (rank 0). Returns the results payload.

    ``results.json`` is rewritten after each run, so an interrupted arena keeps what it finished;
    with ``resume`` finished runs are read back from their checkpoints and unfinished ones
    continue from their last checkpoint. ``on_run`` is called with each finished run's record.
    """
    from hybridzoo.arena.report import format_leaderboard

    context = context or DistContext()
    specs, budget = plan_runs(config)
    out = config.out
    runs: list[dict[str, Any]] = []
    started = time.perf_counter()
    for spec in specs:
        result, _ = train_run(
            spec,
            config.train,
            context=context,
            checkpoint_path=out / "checkpoints" / f"{spec.slug}.pt",
            resume=resume,
            progress=progress,
        )
        result = {**result, "budget": budget}
        runs.append(result)
        if on_run is not None:
            on_run(result)
        if context.is_main:
            _write_json(out / RESULTS_FILE, _payload(config, budget, runs, context))
    payload = _payload(config, budget, runs, context)
    payload["total_seconds"] = time.perf_counter() - started
    if context.is_main:
        out.mkdir(parents=True, exist_ok=True)
        (out / LEADERBOARD_FILE).write_text(format_leaderboard(payload) + "\n")
        payload["plot"] = None
        if plot:
            from hybridzoo.arena.plot import plot_results

            try:
                payload["plot"] = str(plot_results(payload, out / PLOT_FILE))
            except ImportError as exc:
                payload["plot_error"] = str(exc)
        _write_json(out / RESULTS_FILE, payload)
    context.barrier()
    return payload


def _write_json(path: Path, payload: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(payload, indent=2, default=str) + "\n")
    tmp.replace(path)

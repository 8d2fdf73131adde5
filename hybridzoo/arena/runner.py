"""The arena itself: plan the runs of every stage, train them, write the results.

:func:`run_arena` goes through the stages of an :class:`~hybridzoo.arena.plan.ArenaConfig` in
order (a stage without learning rates uses each model's best one so far), trains the runs that
are not done yet (``jobs`` at a time, each with its own checkpoint), and writes ``results.json``
(every run, strict JSON), ``leaderboard.txt`` and ``arena.png`` into the output folder (rank 0
only under torchrun). ``results.json`` is rewritten after each run, so an interrupted arena keeps
what it finished, and ``--resume`` picks up the rest.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs
import torch

import hybridzoo
from hybridzoo.arena.budget import match_hidden_size, scaled_layer_options
from hybridzoo.arena.distributed import DistContext
from hybridzoo.arena.jobs import Executor
from hybridzoo.arena.plan import ArenaConfig, Run, choose_lrs, plan_stage, resolve
from hybridzoo.arena.spec import RunSpec
from hybridzoo.arena.tasks import task_params_for

__all__ = [
    "ArenaConfig",
    "match_hidden_size",
    "plan_runs",
    "run_arena",
    "scaled_layer_options",
    "strict_json",
    "task_params_for",
]

RESULTS_FORMAT = 2
RESULTS_FILE = "results.json"
LEADERBOARD_FILE = "leaderboard.txt"
PLOT_FILE = "arena.png"


def plan_runs(config: ArenaConfig) -> tuple[list[RunSpec], int | None]:
    """One :class:`~hybridzoo.arena.spec.RunSpec` per (length, model, width) of every stage, and
    the budget; every task and model is checked here, before anything trains."""
    config, budget, widths = resolve(config)
    specs: dict[str, RunSpec] = {}
    for stage in config.effective_stages():
        for run in plan_stage(config, stage, widths, {}):
            specs.setdefault(str(run.spec.key()), run.spec)
    for spec in specs.values():
        spec.param_count()  # validates the options of every model now
    return list(specs.values()), budget


def _payload(
    config: ArenaConfig,
    budget: int | None,
    runs: Sequence[Mapping[str, Any]],
    chosen: Mapping[str, float],
    context: DistContext,
) -> dict[str, Any]:
    stages = [attrs.asdict(s) for s in config.effective_stages()]
    if all(s["lrs"] is not None for s in stages):
        chosen = {}  # no stage picked a rate: each row reports its own best (Zoology's best of k)
    return {
        "format": RESULTS_FORMAT,
        "hybridzoo_version": hybridzoo.__version__,
        "torch_version": torch.__version__,
        "title": config.title,
        "task": config.task,
        "task_params": dict(config.task_params),
        "seq_lens": list(config.all_seq_lens()),
        "models": [attrs.asdict(m) for m in config.patterns],
        "unavailable": [list(u) for u in config.unavailable],
        "budget": budget,
        "widths": list(config.widths) if config.widths else None,
        "stages": stages,
        "chosen_lrs": dict(chosen),
        "settings": attrs.asdict(config.train),
        "chance_margin": config.chance_margin,
        "reference": attrs.asdict(config.reference) if config.reference else None,
        "figures": list(config.figures),
        "jobs": config.jobs,
        "world_size": context.world_size,
        "device": str(context.device),
        "runs": list(runs),
    }


def run_arena(
    config: ArenaConfig,
    *,
    context: DistContext | None = None,
    resume: bool = False,
    progress: bool = True,
    plot: bool = True,
    threads: int = 1,
    on_run: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Train every planned run and write the results (rank 0). Returns the results payload.

    With ``resume`` finished runs are read back from their checkpoints and unfinished ones
    continue from their last checkpoint. ``on_run`` is called with each finished run's record.
    """
    from hybridzoo.arena.report import format_leaderboard

    context = context or DistContext()
    config, budget, widths = resolve(config)
    out = config.out
    results: dict[str, dict[str, Any]] = {}
    order: list[str] = []
    chosen: dict[str, float] = {}
    tried: list[str] = []  # the runs of the stages that try learning rates: they alone choose
    started = time.perf_counter()
    with Executor(jobs=config.jobs, threads=threads, context=context, progress=progress) as pool:
        for stage in config.effective_stages():
            todo: dict[str, Run] = {}
            planned = plan_stage(config, stage, widths, chosen)
            for run in planned:
                if run.name not in results and run.name not in todo:
                    todo[run.name] = run
            longest_first = sorted(todo.values(), key=_cost, reverse=True)  # packs jobs best
            for run, result in pool.run(longest_first, out=out, resume=resume):
                results[run.name] = {**result, "stage": run.stage, "budget": budget}
                if on_run is not None:
                    on_run(results[run.name])
                if context.is_main:
                    done = [results[n] for n in [*order, *todo] if n in results]
                    write_json(out / RESULTS_FILE, _payload(config, budget, done, chosen, context))
            order += list(todo)
            if stage.lrs is not None:
                # a stage that reuses the chosen rates (at other lengths and seeds) must not
                # change them: its runs at a harder length would outvote the sweep's
                tried += [run.name for run in planned if run.name not in tried]
                chosen = choose_lrs([results[n] for n in tried])
    payload = _payload(config, budget, [results[n] for n in order], chosen, context)
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
        write_json(out / RESULTS_FILE, payload)
    context.barrier()
    return payload


def _cost(run: Run) -> float:
    """A proxy of a run's training time: steps × tokens per step × parameters."""
    tokens = run.settings.batch_size * run.spec.task_params.get("seq_len", 1)
    return float(run.settings.steps * tokens * run.spec.param_count())


def strict_json(value: Any) -> Any:
    """``value`` with every non-finite float (NaN, ±inf) replaced by ``None``: what JSON can
    hold (Python's ``json`` would write the non-standard ``NaN``/``Infinity``)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): strict_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [strict_json(v) for v in value]
    return value


def write_json(path: Path, payload: Mapping[str, Any]) -> None:
    """Write ``payload`` as strict JSON (atomically: a temporary file, then a rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    text = json.dumps(strict_json(payload), indent=2, default=str, allow_nan=False)
    tmp.write_text(text + "\n")
    tmp.replace(path)

"""Text views of the arena without training: ``--list`` (tasks, presets, plugins) and the plan
of a run (``--dry-run``: every run and the cost of all of them)."""

from __future__ import annotations

import time

import attrs

from hybridzoo.arena.plan import ArenaConfig, Run, plan_stage, resolve
from hybridzoo.arena.plugins import get_arena_registry
from hybridzoo.arena.presets import available_models
from hybridzoo.arena.report import format_table

__all__ = ["calibrate", "describe_plan", "format_listing", "plugin_warnings"]


def plugin_warnings() -> list[str]:
    """One line per arena plugin that failed to load (the others work)."""
    return [f"hybridzoo arena: warning: {r.error}" for r in get_arena_registry().failures()]


def _first_line(text: str | None) -> str:
    return (text or "").strip().splitlines()[0] if (text or "").strip() else ""


def format_listing() -> str:
    """Every registered task (with its chance level and parameters), preset and plugin."""
    registry = get_arena_registry()
    lines = ["tasks:"]
    for name, cls in registry.tasks().items():
        chance = _first_line(cls.chance_level.__doc__)
        lines.append(f"  {name:<18} {_first_line(cls.__doc__)}")
        lines.append(f"  {'':<18} chance: {chance}  [{registry.source('task', name)}]")
        for field in attrs.fields(cls):
            help_text = field.metadata.get("help", "")
            lines.append(f"  {'':<20} {field.name}={field.default!r}  {help_text}")
    lines.append("presets:")
    for name, preset in registry.presets().items():
        lines.append(f"  {name:<10} {preset.description}")
        ok, missing = available_models(preset.models)
        for model in ok:
            lines.append(f"  {'':<12} {model.name:<14} {model.pattern:<8} {model.note}")
        for model, why in missing:
            lines.append(f"  {'':<12} {model.name:<14} unavailable: {why}")
    lines.append("plugins (entry-point group hybridzoo.tasks):")
    for record in registry.plugins():
        what = ", ".join(record.tasks + record.presets) or "-"
        status = record.status if record.error is None else f"{record.status}: {record.error}"
        lines.append(f"  {record.name} ({record.distribution} {record.version}): {status}; {what}")
    return "\n".join(lines)


def calibrate(run: Run, steps: int = 5, warmup: int = 2) -> tuple[float, float, float]:
    """Measure one run's cost on this machine: ``(cpu s/step, wall s/step, cpu s per
    evaluation)``, from ``warmup + steps`` training steps and one held-out evaluation."""
    from hybridzoo.arena.train import train_run

    marks: list[tuple[float, float]] = []
    settings = attrs.evolve(
        run.settings,
        steps=warmup + steps,
        eval_every=10**9,
        target_accuracy=None,
        train_examples=None,
    )
    train_run(
        run.spec,
        settings,
        progress=False,
        measure_latency=False,
        on_step=lambda _: marks.append((time.process_time(), time.perf_counter())),
    )
    evaluation = time.process_time() - marks[-1][0]
    (cpu0, wall0), (cpu1, wall1) = marks[warmup - 1], marks[-1]
    return (cpu1 - cpu0) / steps, (wall1 - wall0) / steps, evaluation


def _estimate(config: ArenaConfig, runs: list[Run]) -> list[str]:
    """Calibrate every distinct (model, length, batch) and bound the arena's wall time."""
    measured: dict[tuple, tuple[float, float, float]] = {}
    rows, total = [], 0.0
    for run in runs:
        key = (
            run.model,
            run.spec.hidden_size,
            run.spec.task_params.get("seq_len"),
            run.settings.batch_size,
        )
        if key not in measured:
            measured[key] = calibrate(run)
            cpu, wall, evaluation = measured[key]
            rows.append([str(k) for k in key] + [f"{cpu:.3f}", f"{wall:.3f}", f"{evaluation:.2f}"])
        cpu, _, evaluation = measured[key]
        total += (
            run.settings.steps * cpu + (run.settings.steps / run.settings.eval_every) * evaluation
        )
    columns = [("model", "<"), ("hidden", ">"), ("L", ">"), ("batch", ">"), ("cpu s/step", ">"),
               ("wall s/step", ">"), ("cpu s/eval", ">")]  # fmt: skip
    minutes = total / config.jobs / 60
    return [
        "",
        "measured here (7 steps each; the estimate uses CPU time, i.e. one free core per job):",
        format_table(rows, columns),
        f"estimated wall time: at most {minutes:.1f} min with {config.jobs} job(s) "
        "(every run to its last step; runs that reach the target stop sooner)",
    ]


def describe_plan(config: ArenaConfig, *, brief: bool = False, measure: bool = False) -> str:
    """The run list of ``config`` and its cost, without training (``brief``: a summary).

    Stages that take each model's best learning rate are listed with ``best`` for it. The cost
    is an upper bound (every run to its last step; early stopping ends most sooner): optimizer
    steps, sequences, tokens, and forward+backward FLOPs estimated as ``6 × parameters ×
    tokens`` (a dense approximation that leaves out the ``L²`` term of a full KV cache).
    """
    config, budget, widths = resolve(config)
    widths_text = ", ".join(map(str, config.widths or ()))
    size = f"budget {budget:,} parameters" if budget else f"widths {widths_text}"
    lines = [
        f"hybridzoo arena · {config.title or 'custom run'} · task {config.task} · {size} · "
        f"{config.jobs} job(s) at a time"
    ]
    for label, reason in config.unavailable:
        lines.append(f"  not run: {label}: {reason}")
    rows, seen, runs = [], set(), []
    totals = {"runs": 0, "steps": 0, "sequences": 0, "tokens": 0, "flops": 0.0}
    placeholder: dict[str, float] = {}
    for stage in config.effective_stages():
        # a stage that takes each model's best rate: one of the rates swept before it (so the
        # runs it shares with the sweep count once), or --lr
        for run in plan_stage(config, stage, widths, placeholder):
            if run.name in seen:
                continue
            seen.add(run.name)
            runs.append(run)
            task = run.spec.make_task()
            params = run.spec.param_count()
            sequences = run.settings.steps * run.settings.batch_size
            tokens = sequences * task.seq_len
            totals["runs"] += 1
            totals["steps"] += run.settings.steps
            totals["sequences"] += sequences
            totals["tokens"] += tokens
            totals["flops"] += 6.0 * params * tokens
            lr = "best" if stage.lrs is None else f"{run.settings.lr:.3g}"
            if stage.lrs is not None:
                placeholder.setdefault(run.model, stage.lrs[0])
            rows.append(
                [
                    stage.name,
                    run.model,
                    str(task.seq_len),
                    str(run.spec.hidden_size),
                    f"{params:,}",
                    lr,
                    str(run.settings.seed),
                    f"{run.settings.steps:,}",
                    str(run.settings.batch_size),
                    f"{sequences:,}",
                ]
            )
    if not brief:
        columns = [("stage", "<"), ("model", "<"), ("L", ">"), ("hidden", ">"), ("params", ">"),
                   ("lr", ">"), ("seed", ">"), ("max steps", ">"), ("batch", ">"),
                   ("sequences", ">")]  # fmt: skip
        lines += ["", format_table(rows, columns), ""]
    else:
        for model in config.patterns:
            hidden = ", ".join(map(str, widths[model.name]))
            lines.append(f"  {model.name:<14} {model.pattern:<10} hidden {hidden}")
    lines.append(
        f"{totals['runs']} runs; at most {totals['steps']:,} steps, {totals['sequences']:,} "
        f"sequences, {totals['tokens']:,} tokens, ~{totals['flops']:.2e} FLOPs "
        "(6·params·tokens; an upper bound: early stopping ends most runs sooner)"
    )
    if measure:
        lines += _estimate(config, runs)
    return "\n".join(lines)

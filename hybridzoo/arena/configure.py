"""From parsed ``hybridzoo arena`` arguments and a preset to an :class:`ArenaConfig`.

The preset gives every default; an option given on the command line overrides it:
``--patterns`` replaces the models (``--models`` keeps some of them), ``--seq-lens`` the lengths
of every stage, ``--lrs`` the learning rates of every stage that sweeps them (a stage that takes
each model's best keeps doing so), ``--seeds`` the seeds of every stage.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

import attrs

from hybridzoo.arena.plan import ArenaConfig
from hybridzoo.arena.presets import ArenaModel, Preset, available_models, get_preset
from hybridzoo.arena.spec import TrainSettings
from hybridzoo.errors import ConfigError, did_you_mean

__all__ = ["build_config"]

_TASK_FLAGS = ("vocab_size", "num_kv_pairs", "power_a", "num_tokens")
_TRAIN_FLAGS = {
    "steps": "steps",
    "batch_size": "batch_size",
    "weight_decay": "weight_decay",
    "warmup": "warmup_fraction",
    "eval_every": "eval_every",
    "eval_examples": "eval_examples",
    "target_accuracy": "target_accuracy",
    "checkpoint_every": "checkpoint_every",
    "dropout": "dropout",
    "dtype": "dtype",
    "train_examples": "train_examples",
    "pack": "pack",
}


def _models(args: argparse.Namespace, preset: Preset, label: Callable[[str], str]) -> list:
    if args.patterns:
        return [ArenaModel(pattern=label(p)) for p in args.patterns]
    models = list(preset.models)
    if args.models:
        known = {m.name: m for m in models}
        unknown = [name for name in args.models if name not in known]
        if unknown:
            raise ConfigError(
                f"preset {preset.name!r} has no model {unknown[0]!r}."
                f"{did_you_mean(unknown[0], known)} Its models: {', '.join(known)}"
            )
        models = [known[name] for name in args.models]
    return models


def _stages(args: argparse.Namespace, preset: Preset) -> tuple:
    lrs = args.lrs or ([args.lr] if args.lr is not None else None)
    seeds = args.seeds or ([args.seed] if args.seed is not None else None)
    stages = []
    for stage in preset.stages:
        changes: dict[str, Any] = {}
        if args.seq_lens:
            changes["seq_lens"] = tuple(args.seq_lens)
        if lrs and stage.lrs is not None:
            changes["lrs"] = tuple(lrs)
        if seeds:
            changes["seeds"] = tuple(seeds)
        stages.append(attrs.evolve(stage, **changes))
    return tuple(stages)


def _train(args: argparse.Namespace, preset: Preset) -> tuple[TrainSettings, int | None]:
    values = {k: v for k, v in preset.train.items() if k != "epochs"}
    for flag, field in _TRAIN_FLAGS.items():
        if getattr(args, flag) is not None:
            values[field] = getattr(args, flag)
    if args.no_early_stop:
        values["target_accuracy"] = None
    epochs = args.epochs
    if epochs is None and args.steps is None:
        epochs = preset.train.get("epochs")
    return TrainSettings(**values), epochs


def _count_runs(models: list, stages: tuple, widths: Any) -> int:
    per_model = sum(len(s.seq_lens) * len(s.lrs or (1,)) * len(s.seeds) for s in stages)
    return len(models) * per_model * len(widths or (1,))


def build_config(
    args: argparse.Namespace,
    preset_name: str,
    pattern_label: Callable[[str], str],
    default_jobs: Callable[[str, int], int],
) -> ArenaConfig:
    """The :class:`ArenaConfig` of parsed ``args`` on top of the preset ``preset_name``."""
    preset = get_preset(preset_name)
    layer_options = dict(args.layer_option)
    models, missing = available_models(_models(args, preset, pattern_label), layer_options)
    if not models:
        reasons = "; ".join(f"{m.name}: {why}" for m, why in missing)
        raise ConfigError(f"no model of this arena can be built here ({reasons})")
    task = args.task or preset.task
    task_params = dict(preset.task_params) if task == preset.task else {}
    task_params.update({k: getattr(args, k) for k in _TASK_FLAGS if getattr(args, k) is not None})
    task_params.update(dict(args.task_option))
    stages = _stages(args, preset)
    train, epochs = _train(args, preset)
    widths = tuple(args.widths) if args.widths else preset.widths
    jobs = args.jobs or default_jobs(args.device, _count_runs(models, stages, widths))
    return ArenaConfig(
        patterns=models,
        task=task,
        task_params=task_params,
        stages=stages,
        budget=args.budget,
        hidden_size=args.hidden_size or preset.hidden_size,
        match_budget=not args.no_match,
        widths=widths,
        tie=not args.untied,
        layer_options=layer_options,
        train=train,
        batch_sizes={} if args.batch_size else preset.batch_sizes,
        epochs=epochs,
        jobs=jobs,
        chance_margin=args.chance_margin,
        reference=preset.reference,
        title=preset.label or f"preset {preset.name!r}",
        figures=preset.figures,
        unavailable=tuple((m.name, why) for m, why in missing),
        out=args.out,
    )

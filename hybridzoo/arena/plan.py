"""From an :class:`ArenaConfig` to the list of runs: models × widths × stages.

Each model's width is chosen once so that its language model has the budget's parameters
(:mod:`hybridzoo.arena.budget`), or it is trained at every width of ``widths``. A stage runs
every model at each of its lengths × learning rates × seeds; a stage without learning rates
takes each model's best one of the stages before it (:func:`choose_lrs`). Runs are identified
by their canonical key: a run that two stages (or two spellings of one pattern) ask for is
trained once.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs

from hybridzoo.arena.budget import match_hidden_size, scaled_layer_options
from hybridzoo.arena.lm import language_model_param_count
from hybridzoo.arena.presets import ArenaModel, Reference, Stage
from hybridzoo.arena.spec import RunSpec, TrainSettings, run_name
from hybridzoo.arena.tasks import check, make_task, task_params_for
from hybridzoo.errors import ConfigError
from hybridzoo.validate import at_least, in_range

__all__ = ["ArenaConfig", "Run", "choose_lrs", "plan_models", "plan_stage", "resolve"]


def _models(value: Sequence[str | ArenaModel]) -> tuple[ArenaModel, ...]:
    return tuple(m if isinstance(m, ArenaModel) else ArenaModel(pattern=m) for m in value)


def _optional_tuple(value: Sequence[Any] | None) -> tuple[Any, ...] | None:
    return None if value is None else tuple(value)


@attrs.frozen(kw_only=True)
class ArenaConfig:
    """Everything an arena run needs (the CLI builds one from a preset and its options).

    ``patterns`` are the models: pattern strings or :class:`~hybridzoo.arena.presets.ArenaModel`
    objects (each with its own label and options). ``task_params`` exclude ``seq_len``.
    ``budget=None`` uses the parameter count of the first model at ``hidden_size``; with
    ``match_budget=False`` every model is built at ``hidden_size``; ``widths`` trains every model
    at each of these widths instead. ``stages=None`` is one stage: ``seq_lens`` × ``lrs``
    (default ``(train.lr,)``) × ``seeds`` (default ``(train.seed,)``). ``epochs`` (with
    ``train.train_examples``) sets the steps to that many passes over the training set, at each
    length's batch size (``batch_sizes``, default ``train.batch_size``). ``jobs`` runs that many
    trainings at once (one process each).
    """

    patterns: tuple[ArenaModel, ...] = attrs.field(converter=_models)
    task: str = "mqar"
    task_params: dict[str, Any] = attrs.field(factory=dict, converter=dict)
    seq_lens: tuple[int, ...] = attrs.field(default=(64,), converter=tuple)
    budget: int | None = None
    hidden_size: int = 64
    match_budget: bool = True
    widths: tuple[int, ...] | None = attrs.field(default=None, converter=_optional_tuple)
    tie: bool = True
    layer_options: dict[str, Any] = attrs.field(factory=dict, converter=dict)
    train: TrainSettings = attrs.field(factory=TrainSettings)
    lrs: tuple[float, ...] | None = attrs.field(default=None, converter=_optional_tuple)
    seeds: tuple[int, ...] | None = attrs.field(default=None, converter=_optional_tuple)
    stages: tuple[Stage, ...] | None = attrs.field(default=None, converter=_optional_tuple)
    batch_sizes: dict[int, int] = attrs.field(factory=dict, converter=dict)
    epochs: int | None = None
    jobs: int = 1
    chance_margin: float = 0.05
    reference: Reference | None = None
    title: str = ""
    figures: tuple[str, ...] = ("state", "length")
    unavailable: tuple[tuple[str, str], ...] = ()
    out: Path = attrs.field(default=Path("arena-results"), converter=Path)

    def __attrs_post_init__(self) -> None:
        if not self.patterns:
            raise ConfigError("the arena needs at least one model (pattern)")
        if not self.seq_lens and self.stages is None:
            raise ConfigError("seq_lens must hold at least one sequence length")
        check(at_least(1, allow_none=True), "budget", self.budget)
        check(at_least(1), "hidden_size", self.hidden_size)
        check(at_least(1), "jobs", self.jobs)
        check(at_least(1, allow_none=True), "epochs", self.epochs)
        check(in_range(0.0, 1.0), "chance_margin", self.chance_margin)
        for name, values in (("seq_lens", self.seq_lens), ("widths", self.widths or ())):
            for value in values:
                check(at_least(1), name, value)
        for lr in self.lrs or ():
            TrainSettings(lr=lr)  # the same check as a run's
        if self.epochs is not None and self.train.train_examples is None:
            raise ConfigError("epochs needs a fixed training set: set train_examples")
        labels = [m.name for m in self.patterns]
        if len(set(labels)) != len(labels):
            raise ConfigError(f"model labels must be unique, got {labels}")

    def effective_stages(self) -> tuple[Stage, ...]:
        """The stages, or the single stage of ``seq_lens`` × ``lrs`` × ``seeds``."""
        if self.stages is not None:
            return self.stages
        lrs = self.lrs or (self.train.lr,)
        seeds = self.seeds or (self.train.seed,)
        return (Stage(name="runs", seq_lens=self.seq_lens, lrs=lrs, seeds=seeds),)

    def all_seq_lens(self) -> tuple[int, ...]:
        """Every sequence length of every stage, in order of appearance."""
        return tuple(dict.fromkeys(L for s in self.effective_stages() for L in s.seq_lens))


@attrs.frozen
class Run:
    """One planned training run."""

    spec: RunSpec
    settings: TrainSettings
    stage: str
    model: str

    @property
    def name(self) -> str:
        """The run's unique name (its checkpoint file is ``checkpoints/<name>.pt``)."""
        return run_name(self.spec, self.settings)


def _task_params(config: ArenaConfig, seq_len: int) -> dict[str, Any]:
    params = task_params_for(config.task, config.task_params, seq_len)
    return attrs.asdict(make_task(config.task, **params))  # defaults filled in, checked


def _layer_options(config: ArenaConfig, model: ArenaModel) -> dict[str, Any]:
    return {**config.layer_options, **model.layer_options}


def plan_models(config: ArenaConfig) -> tuple[int | None, dict[str, tuple[int, ...]]]:
    """The budget and each model's width(s) (``{label: widths}``)."""
    if config.widths:
        return None, {m.name: config.widths for m in config.patterns}
    first_len = config.all_seq_lens()[0]
    task = make_task(config.task, **_task_params(config, first_len))
    lm_extra = {"max_len": task.seq_len}
    if getattr(task, "readout", "causal") != "causal":
        lm_extra["readout"] = task.readout
    budget = config.budget
    if budget is None:
        first = config.patterns[0]
        options = scaled_layer_options(
            first.pattern, config.hidden_size, first_len, _layer_options(config, first)
        )
        budget = language_model_param_count(
            first.pattern,
            vocab_size=task.vocab_size,
            hidden_size=config.hidden_size,
            tie=config.tie,
            **options,
            **_lm_options(first, lm_extra),
        )
    widths: dict[str, tuple[int, ...]] = {}
    for model in config.patterns:
        if not config.match_budget:
            widths[model.name] = (config.hidden_size,)
            continue
        hidden, _ = match_hidden_size(
            model.pattern,
            budget=budget,
            vocab_size=task.vocab_size,
            seq_len=first_len,
            user_options=_layer_options(config, model),
            tie=config.tie,
            lm_options=_lm_options(model, lm_extra),
        )
        widths[model.name] = (hidden,)
    return budget, widths


def resolve(config: ArenaConfig) -> tuple[ArenaConfig, int | None, dict[str, tuple[int, ...]]]:
    """:func:`plan_models`, then models that are the same model as an earlier one (patterns
    that expand alike with the same options, at the same width) are dropped, and named in
    ``unavailable``: each is trained and reported once. Returns ``(config, budget, widths)``."""
    budget, widths = plan_models(config)
    stage = config.effective_stages()[0]
    probe = attrs.evolve(stage, seq_lens=stage.seq_lens[:1], lrs=(config.train.lr,), seeds=(0,))
    first: dict[str, str] = {}
    kept, dropped = [], []
    for model in config.patterns:
        keys = [str(run.spec.key()) for run in plan_stage(config, probe, widths, {}, [model])]
        twin = next((first[k] for k in keys if k in first), None)
        if twin is not None:
            dropped.append((model.name, f"the same model as {twin!r}: trained and shown once"))
            continue
        first.update(dict.fromkeys(keys, model.name))
        kept.append(model)
    if not dropped:
        return config, budget, widths
    changed = attrs.evolve(config, patterns=kept, unavailable=(*config.unavailable, *dropped))
    return changed, budget, widths


def _lm_options(model: ArenaModel, extra: Mapping[str, Any]) -> dict[str, Any]:
    lm = dict(model.lm_options)
    if lm.get("positions") is not None or "readout" in extra:
        lm.update({k: v for k, v in extra.items() if k not in lm})
    return lm


def _settings(config: ArenaConfig, seq_len: int, lr: float, seed: int) -> TrainSettings:
    batch = config.batch_sizes.get(seq_len, config.train.batch_size)
    changes: dict[str, Any] = {"lr": lr, "seed": seed, "batch_size": batch}
    if config.epochs is not None:
        per_epoch = math.ceil(config.train.train_examples / batch)
        changes.update(steps=config.epochs * per_epoch, eval_every=per_epoch)
    return attrs.evolve(config.train, **changes)


def plan_stage(
    config: ArenaConfig,
    stage: Stage,
    widths: Mapping[str, Sequence[int]],
    chosen: Mapping[str, float],
    models: Sequence[ArenaModel] | None = None,
) -> list[Run]:
    """The runs of ``stage`` (of ``models``, default all); ``chosen`` gives each model's
    learning rate where the stage has none (see :func:`choose_lrs`)."""
    runs: list[Run] = []
    for seq_len in stage.seq_lens:
        params = _task_params(config, seq_len)
        for model in config.patterns if models is None else models:
            lrs = stage.lrs or (chosen.get(model.name, config.train.lr),)
            for hidden in widths[model.name]:
                spec = RunSpec(
                    pattern=model.pattern,
                    model=model.name,
                    task=config.task,
                    task_params=params,
                    hidden_size=hidden,
                    tie=config.tie,
                    layer_options=scaled_layer_options(
                        model.pattern, hidden, seq_len, _layer_options(config, model)
                    ),
                    lm_options=model.lm_options,
                )
                for lr in lrs:
                    for seed in stage.seeds:
                        settings = _settings(config, seq_len, lr, seed)
                        runs.append(Run(spec, settings, stage.name, model.name))
    return runs


def choose_lrs(results: Sequence[Mapping[str, Any]]) -> dict[str, float]:
    """Each model's best learning rate over ``results``: the highest mean best accuracy, then
    the lowest mean final loss (diverged runs count as accuracy 0)."""
    scores: dict[tuple[str, float], list[tuple[float, float]]] = {}
    for r in results:
        accuracy = 0.0 if r.get("diverged") else _number(r.get("best_accuracy"), 0.0)
        loss = math.inf if r.get("diverged") else _number(r.get("loss"), math.inf)
        scores.setdefault((r["model"], r["lr"]), []).append((accuracy, loss))
    best: dict[str, tuple[float, float, float]] = {}
    for (model, lr), values in scores.items():
        accuracy = sum(v[0] for v in values) / len(values)
        loss = sum(v[1] for v in values) / len(values)
        if model not in best or (accuracy, -loss) > (best[model][0], -best[model][1]):
            best[model] = (accuracy, loss, lr)
    return {model: lr for model, (_, _, lr) in best.items()}


def _number(value: Any, default: float) -> float:
    if value is None or not isinstance(value, int | float) or value != value:
        return default
    return float(value)

"""Presets: named arena runs (which models, which task, which stages), contributed by plugins.

The core names no layer: the default run, ``--quick`` and ``--paper`` are presets that a plugin
contributes through the hook ``hybridzoo_arena_presets`` (see :mod:`hybridzoo.arena.plugins`);
the builtin ones live in ``hybridzoo_plugins.arena``. A preset is plain data:

- :class:`ArenaModel`: a label, a pattern and the model's own layer and language-model options
  (a builtin plugin's ``conv-attn``: a pattern with a short-convolution option set);
- :class:`Stage`: sequence lengths × learning rates × seeds; a stage without learning rates
  takes, per model, the best one of the stages before it (a sweep at one length, then seeds at
  every length with the winner);
- :class:`Reference`: the published protocol the preset is compared with (its sequences per
  run and learning rates), so that the leaderboard can say how much of it this run covers.

A model whose layers or options are not installed is *unavailable*: the arena lists it with the
reason and runs the others (:func:`available_models`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import attrs

from hybridzoo.errors import HybridZooError

__all__ = ["ArenaModel", "Preset", "Reference", "Stage", "available_models", "get_preset"]


def _dict(value: Mapping[str, Any] | None) -> dict[str, Any]:
    return dict(value or {})


def _tuple(value: Sequence[Any] | None) -> tuple[Any, ...] | None:
    return None if value is None else tuple(value)


@attrs.frozen(kw_only=True)
class ArenaModel:
    """One model of an arena.

    Attributes:
        pattern: any pattern ``hybridzoo.build`` accepts (``"XX"``, ``"(X Y)*2"``).
        label: its name in the leaderboard (default: the pattern).
        layer_options: this model's own ``<prefix>_<field>`` options (they win over the
            arena-wide ones and over width scaling).
        lm_options: options of the language model around it (``positions="learned"``).
        note: one line saying what the model is (shown with ``--list``).
    """

    pattern: str = attrs.field(converter=str)
    label: str = ""
    layer_options: dict[str, Any] = attrs.field(factory=dict, converter=_dict)
    lm_options: dict[str, Any] = attrs.field(factory=dict, converter=_dict)
    note: str = ""

    @property
    def name(self) -> str:
        """The label, or the pattern when there is none."""
        return self.label or self.pattern


@attrs.frozen(kw_only=True)
class Stage:
    """Runs of every model at each length × learning rate × seed.

    ``lrs=None`` uses, for each model, the learning rate that did best in the earlier stages
    (highest accuracy, then lowest loss), or the arena's ``--lr`` in a first stage.
    """

    name: str
    seq_lens: tuple[int, ...] = attrs.field(converter=tuple)
    lrs: tuple[float, ...] | None = attrs.field(default=None, converter=_tuple)
    seeds: tuple[int, ...] = attrs.field(default=(0,), converter=tuple)


@attrs.frozen(kw_only=True)
class Reference:
    """The published protocol a preset is measured against."""

    name: str
    sequences_per_run: int
    learning_rates: int
    note: str = ""


@attrs.frozen(kw_only=True)
class Preset:
    """A named arena run.

    Attributes:
        name: how ``--preset`` (or ``--quick``, ``--paper`` for the builtin ones) selects it.
        description: one line for ``--list``.
        label: shown in the leaderboard's title (``"smoke test"``).
        models, task, task_params, stages: what runs.
        train: :class:`~hybridzoo.arena.train.TrainSettings` fields; ``epochs`` (with
            ``train_examples``) sets the steps to that many passes over a fixed training set.
        batch_sizes: a batch size per sequence length, where it differs from ``train``'s.
        hidden_size: the first model's width, which sets the parameter budget of all.
        widths: train every model at each of these widths instead (no budget matching).
        reference: the protocol the leaderboard compares this run with.
        figures: the plot's panels (``"state"``, ``"length"``, ``"width"``).
    """

    name: str
    description: str
    models: tuple[ArenaModel, ...] = attrs.field(converter=tuple)
    task: str
    stages: tuple[Stage, ...] = attrs.field(converter=tuple)
    task_params: dict[str, Any] = attrs.field(factory=dict, converter=_dict)
    train: dict[str, Any] = attrs.field(factory=dict, converter=_dict)
    batch_sizes: dict[int, int] = attrs.field(factory=dict, converter=_dict)
    hidden_size: int = 64
    widths: tuple[int, ...] | None = attrs.field(default=None, converter=_tuple)
    label: str = ""
    reference: Reference | None = None
    figures: tuple[str, ...] = ("state", "length")

    def __attrs_post_init__(self) -> None:
        if not self.models or not self.stages:
            raise ValueError(f"preset {self.name!r} needs at least one model and one stage")


def get_preset(name: str) -> Preset:
    """The registered preset ``name`` (a :class:`~hybridzoo.ConfigError` with close matches)."""
    from hybridzoo.arena.plugins import get_arena_registry
    from hybridzoo.errors import ConfigError, did_you_mean

    presets = get_arena_registry().presets()
    if name not in presets:
        raise ConfigError(
            f"unknown preset {name!r}.{did_you_mean(name, presets)} Presets: "
            f"{', '.join(presets) or '(none: is an arena plugin installed?)'}"
        )
    return presets[name]


def available_models(
    models: Sequence[ArenaModel], layer_options: Mapping[str, Any] | None = None
) -> tuple[list[ArenaModel], list[tuple[ArenaModel, str]]]:
    """Split ``models`` into those the installed layers can build and ``(model, reason)`` for
    the others: a layer that is not registered, an option that no layer of the pattern has, or a
    value the installed layer does not accept (yet)."""
    import hybridzoo
    from hybridzoo.options import make_options, option_table
    from hybridzoo.patterns import resolve_pattern

    registry = hybridzoo.get_registry()
    ok: list[ArenaModel] = []
    missing: list[tuple[ArenaModel, str]] = []
    for model in models:
        try:
            names = resolve_pattern(model.pattern, registry=registry)
        except HybridZooError as exc:
            missing.append((model, str(exc).splitlines()[0]))
            continue
        specs = [registry.get(n) for n in dict.fromkeys(names)]
        table = option_table(specs)
        unknown = [k for k in model.layer_options if k not in table]
        if unknown:
            layers = ", ".join(s.name for s in specs)
            missing.append(
                (model, f"option(s) {', '.join(unknown)} not provided by its layers ({layers})")
            )
            continue
        options = {**(layer_options or {}), **model.layer_options}
        problems = [
            problem
            for spec in specs
            for problem in make_options(
                spec,
                {table[k][1]: v for k, v in options.items() if table.get(k, (None,))[0] is spec},
            )[1]
        ]
        if problems:
            missing.append((model, "not accepted by the installed layers: " + "; ".join(problems)))
            continue
        ok.append(model)
    return ok, missing

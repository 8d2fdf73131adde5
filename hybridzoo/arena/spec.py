"""What one arena run is: :class:`RunSpec` (the model and the task) and :class:`TrainSettings`
(how it is trained), both validated through :mod:`hybridzoo.validate`, and the run's canonical
key, which names its checkpoint (:func:`run_key`, :func:`run_name`)."""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Mapping
from typing import Any

import attrs

from hybridzoo.arena.tasks import MAX_SEED, check_fields, make_task, param
from hybridzoo.errors import ConfigError
from hybridzoo.validate import at_least, in_range, one_of, positive

__all__ = ["DTYPES", "RunSpec", "TrainSettings", "run_key", "run_name"]

DTYPES = ("float32", "float64", "bfloat16")
"""``--dtype`` values: float32 and float64 train in that precision; bfloat16 is CUDA autocast
(mixed precision: float32 weights and optimizer, bfloat16 matmuls)."""

_FRACTION = in_range(0.0, 1.0, high_open=True)
_NON_NEGATIVE = in_range(0.0, math.inf, high_open=True)


@attrs.frozen(kw_only=True)
class TrainSettings:
    """How one model is trained.

    ``batch_size`` is the global batch (split over ranks under torchrun). The learning rate warms
    up linearly over ``warmup_fraction·steps`` steps, then follows a cosine down to
    ``min_lr_ratio·lr``. Training stops early once the held-out accuracy reaches
    ``target_accuracy`` (``None``: never). ``train_examples=None`` draws fresh examples for every
    step; ``N`` trains on a fixed set of ``N`` examples, reshuffled every epoch (as Zoology does).
    ``pack=K`` trains on rows of ``K`` examples packed end to end (``seq_idx``: each example its
    own document, so the maths is that of the unpacked batch); evaluation is unpacked.
    """

    steps: int = param(600, "maximum optimizer steps", at_least(1))
    batch_size: int = param(128, "global batch size", at_least(1))
    lr: float = param(3e-3, "peak AdamW learning rate", positive)
    weight_decay: float = param(0.1, "AdamW weight decay (matrices only)", _NON_NEGATIVE)
    warmup_fraction: float = param(0.1, "linear warmup, as a fraction of the steps", _FRACTION)
    min_lr_ratio: float = param(0.0, "the cosine ends at this fraction of lr", _FRACTION)
    grad_clip: float = param(1.0, "gradient-norm clipping (0: none)", _NON_NEGATIVE)
    eval_every: int = param(50, "steps between held-out evaluations", at_least(1))
    eval_examples: int = param(1000, "held-out examples", at_least(1))
    target_accuracy: float | None = param(
        0.99,
        "stop once the held-out accuracy reaches this (None: never)",
        in_range(0.0, 1.0, low_open=True, allow_none=True),
    )
    checkpoint_every: int = param(100, "steps between checkpoints", at_least(1))
    seed: int = param(0, "seed of the data and the initial weights", at_least(0))
    dropout: float = param(0.0, "dropout of every block", _FRACTION)
    dtype: str = param("float32", "float32, float64, or bfloat16 (CUDA autocast)", one_of(*DTYPES))
    train_examples: int | None = param(
        None,
        "a fixed training set of this many examples (None: fresh ones)",
        at_least(1, allow_none=True),
    )
    pack: int = param(
        1,
        "examples packed end to end in each training row, each its own document (1: none)",
        at_least(1),
    )

    def __attrs_post_init__(self) -> None:
        check_fields(self)
        if self.seed > MAX_SEED:
            raise ConfigError(f"seed must be an integer in [0, {MAX_SEED}], got {self.seed!r}")

    def lr_factor(self, step: int) -> float:
        """The multiplier of ``lr`` for optimizer step ``step`` (0-based)."""
        warmup = int(self.warmup_fraction * self.steps)
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, self.steps - warmup)
        cosine = 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))
        return self.min_lr_ratio + (1.0 - self.min_lr_ratio) * cosine

    def resume_dict(self) -> dict[str, Any]:
        """The settings a checkpoint must agree with to be resumed (all but the cadence of
        checkpoints)."""
        values = attrs.asdict(self)
        if values["pack"] == 1:  # checkpoints written before packing existed still resume
            del values["pack"]
        return {k: v for k, v in values.items() if k != "checkpoint_every"}


def _dict(value: Mapping[str, Any] | None) -> dict[str, Any]:
    return dict(value or {})


@attrs.frozen(kw_only=True)
class RunSpec:
    """One model on one task: the pattern, its width, its options and the task.

    ``layer_options`` go to ``hybridzoo.build``; ``lm_options`` to the language model
    (:data:`hybridzoo.arena.lm.LM_OPTIONS`); ``model`` is the model's name in the leaderboard
    (default: the pattern).
    """

    pattern: str | tuple[str, ...]
    task: str
    task_params: dict[str, Any] = attrs.field(factory=dict, converter=_dict)
    hidden_size: int = param(None, "width of the residual stream", at_least(1))
    embed_dim: int | None = param(None, "token-embedding width", at_least(1, allow_none=True))
    tie: bool = True
    layer_options: dict[str, Any] = attrs.field(factory=dict, converter=_dict)
    lm_options: dict[str, Any] = attrs.field(factory=dict, converter=_dict)
    model: str = ""

    def __attrs_post_init__(self) -> None:
        check_fields(self)

    @property
    def label(self) -> str:
        """The model's name as shown in the leaderboard."""
        if self.model:
            return self.model
        return self.pattern if isinstance(self.pattern, str) else " ".join(self.pattern)

    @property
    def slug(self) -> str:
        """A file-name-safe description of this run (task, sequence length, model, width)."""
        model = re.sub(r"[^A-Za-z0-9]+", "-", self.label).strip("-") or "model"
        seq = self.task_params.get("seq_len", "")
        return f"{self.task}-L{seq}-{model}-h{self.hidden_size}"

    def make_task(self) -> Any:
        """The task record of this run."""
        return make_task(self.task, **self.task_params)

    def lm_arguments(self) -> dict[str, Any]:
        """Keyword arguments of :func:`~hybridzoo.arena.lm.build_language_model` (and of its
        count) for this run, besides the pattern."""
        task = self.make_task()
        lm = dict(self.lm_options)
        readout = getattr(task, "readout", "causal")
        if readout != "causal":
            lm["readout"] = readout
        if "positions" in lm or readout != "causal":
            lm.setdefault("max_len", task.seq_len)
        return {
            "vocab_size": task.vocab_size,
            "hidden_size": self.hidden_size,
            "embed_dim": self.embed_dim,
            "tie": self.tie,
            **self.layer_options,
            **lm,
        }

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able description."""
        return {
            "pattern": self.pattern if isinstance(self.pattern, str) else list(self.pattern),
            "model": self.label,
            "task": self.task,
            "task_params": dict(self.task_params),
            "hidden_size": self.hidden_size,
            "embed_dim": self.embed_dim,
            "tie": self.tie,
            "layer_options": dict(self.layer_options),
            "lm_options": dict(self.lm_options),
        }

    def key(self) -> dict[str, Any]:
        """The canonical description of the model and task: patterns that expand alike
        (``"(X Y)*2"``, ``"XYXY"``) and options spelt differently give the same key."""
        from hybridzoo.config import HybridConfig

        arguments = self.lm_arguments()
        embed = self.embed_dim or self.hidden_size
        config = HybridConfig.create(
            self.pattern,
            embed_dim=embed,
            hidden_size=self.hidden_size,
            output="sequence",
            **self.layer_options,
        ).to_dict()
        return {
            "task": self.task,
            "task_params": attrs.asdict(self.make_task()),
            "model": config,
            "tie": bool(self.tie) and embed == self.hidden_size,
            "lm": {k: arguments[k] for k in ("positions", "max_len", "readout") if k in arguments},
        }

    def param_count(self) -> int:
        """Exact parameters of the language model, from the plugins' formulas (no build)."""
        from hybridzoo.arena.lm import language_model_param_count

        return language_model_param_count(self.pattern, **self.lm_arguments())

    def flops_per_token(self) -> float | None:
        """Forward FLOPs per token of the language model at the task's length, from formulas:
        the backbone's (:func:`hybridzoo.cost`) and the head's (``2·H·V``; the last-position
        decoder's ``2·(2·H² + H·V)``); ``None`` when a layer declares no FLOPs formula."""
        import hybridzoo

        arguments = self.lm_arguments()
        card = hybridzoo.cost(
            self.pattern,
            seq_len=self.make_task().seq_len,
            hidden_size=self.hidden_size,
            embed_dim=arguments["embed_dim"] or self.hidden_size,
            **self.layer_options,
        )
        if card.flops_per_token is None:
            return None
        H, V = self.hidden_size, arguments["vocab_size"]
        head = 2 * (2 * H * H + H * V) if arguments.get("readout") == "last" else 2 * H * V
        return card.flops_per_token + head

    def state_size(self) -> int | None:
        """Recurrent-state elements per sequence in step mode; ``None`` when a layer's state
        grows with the sequence (a full KV cache) or has no formula."""
        import hybridzoo

        return hybridzoo.state_numel(
            self.pattern, hidden_size=self.hidden_size, **self.layer_options
        )


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str, separators=(",", ":"))


def run_key(spec: RunSpec, settings: TrainSettings) -> dict[str, Any]:
    """The canonical key of a run: the model and task (:meth:`RunSpec.key`), the learning rate
    and the seed. Two runs with equal keys are the same run."""
    return {**spec.key(), "lr": float(settings.lr), "seed": int(settings.seed)}


def run_name(spec: RunSpec, settings: TrainSettings) -> str:
    """A file name for the run, from its canonical key alone (not from how the pattern or the
    model's label are spelt): readable, and unique through a digest of :func:`run_key`."""
    import hybridzoo

    key = run_key(spec, settings)
    digest = hashlib.sha256(_canonical(key).encode()).hexdigest()[:12]
    symbols = "".join(hybridzoo.get_layer(n).symbol for n in key["model"]["pattern"])
    short = symbols if len(symbols) <= 24 else f"{symbols[:20]}-{len(symbols)}"
    seq = spec.task_params.get("seq_len", "")
    lr, seed = f"{settings.lr:.3g}", settings.seed
    return f"{spec.task}-L{seq}-{short}-h{spec.hidden_size}-lr{lr}-s{seed}-{digest}"

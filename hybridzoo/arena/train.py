"""Train one pattern on one task (:func:`train_run`) with held-out evaluation, early stopping,
checkpoints and resume (several patterns at once: :mod:`hybridzoo.arena.runner`).

Determinism: a run's data depend only on ``(seed, step)`` (see
:func:`~hybridzoo.arena.tasks.split_seed`), its initial weights only on ``seed``; a checkpoint
holds the model, the optimizer, the schedule and the RNG state, so a resumed run continues exactly
as an uninterrupted one would.

Distributed: under ``torchrun`` each rank trains a ``DistributedDataParallel`` replica on its
shard (rows ``rank::world_size``) of the same global batch, so the global batch and the data do
not depend on the number of processes. Evaluation is sharded the same way and summed over ranks;
rank 0 alone writes checkpoints and results.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import attrs
import torch
from torch import nn
from tqdm.auto import tqdm

import hybridzoo
from hybridzoo.arena.distributed import DistContext
from hybridzoo.arena.lm import (
    LanguageModel,
    build_language_model,
    language_model_param_count,
    masked_loss_and_accuracy,
    split_build_options,
    step_latency,
)
from hybridzoo.arena.tasks import Batch, make_task, split_seed
from hybridzoo.errors import CheckpointError

CHECKPOINT_FORMAT = 1
DTYPES: dict[str, torch.dtype] = {
    "float32": torch.float32,
    "float64": torch.float64,
    "bfloat16": torch.bfloat16,
}
"""``--dtype`` values: float32 and float64 train in that precision; bfloat16 is CUDA autocast
(mixed precision: float32 weights and optimizer, bfloat16 matmuls)."""


def _positive_int(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{attribute.name} must be a positive integer, got {value!r}")


def _non_negative_int(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{attribute.name} must be an integer >= 0, got {value!r}")


def _non_negative(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value >= 0:
        raise ValueError(f"{attribute.name} must be a number >= 0, got {value!r}")


def _fraction(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value < 1:
        raise ValueError(f"{attribute.name} must be a number in [0, 1), got {value!r}")


def _dtype_name(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    if value not in DTYPES:
        raise ValueError(f"dtype must be one of {', '.join(DTYPES)}, got {value!r}")


@attrs.frozen(kw_only=True)
class TrainSettings:
    """How one pattern is trained (the same for every pattern of an arena).

    ``batch_size`` is the global batch (split over ranks under torchrun). The learning rate warms
    up linearly over ``warmup_fraction·steps`` steps, then follows a cosine down to
    ``min_lr_ratio·lr``. Training stops early once the held-out accuracy reaches
    ``target_accuracy`` (``None``: never).
    """

    steps: int = attrs.field(default=600, validator=_positive_int)
    batch_size: int = attrs.field(default=128, validator=_positive_int)
    lr: float = attrs.field(default=3e-3, validator=_non_negative)
    weight_decay: float = attrs.field(default=0.1, validator=_non_negative)
    warmup_fraction: float = attrs.field(default=0.1, validator=_fraction)
    min_lr_ratio: float = attrs.field(default=0.0, validator=_fraction)
    grad_clip: float = attrs.field(default=1.0, validator=_non_negative)
    eval_every: int = attrs.field(default=50, validator=_positive_int)
    eval_examples: int = attrs.field(default=1000, validator=_positive_int)
    target_accuracy: float | None = 0.99
    checkpoint_every: int = attrs.field(default=100, validator=_positive_int)
    seed: int = attrs.field(default=0, validator=_non_negative_int)
    dropout: float = attrs.field(default=0.0, validator=_fraction)
    dtype: str = attrs.field(default="float32", validator=_dtype_name)

    def lr_factor(self, step: int) -> float:
        """The multiplier of ``lr`` for optimizer step ``step`` (0-based)."""
        warmup = int(self.warmup_fraction * self.steps)
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, self.steps - warmup)
        cosine = 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))
        return self.min_lr_ratio + (1.0 - self.min_lr_ratio) * cosine


_RESUME_IGNORED = ("checkpoint_every",)


def _frozen_dict(value: Mapping[str, Any] | None) -> dict[str, Any]:
    return dict(value or {})


@attrs.frozen(kw_only=True)
class RunSpec:
    """One model on one task: the pattern, its width, its layer options and the task."""

    pattern: str | tuple[str, ...]
    task: str
    task_params: dict[str, Any] = attrs.field(factory=dict, converter=_frozen_dict)
    hidden_size: int = attrs.field(validator=_positive_int)
    embed_dim: int | None = None
    tie: bool = True
    layer_options: dict[str, Any] = attrs.field(factory=dict, converter=_frozen_dict)

    @property
    def label(self) -> str:
        """The pattern as shown in the leaderboard."""
        return self.pattern if isinstance(self.pattern, str) else " ".join(self.pattern)

    @property
    def slug(self) -> str:
        """A file-name-safe identifier of this run (task, sequence length, pattern, width)."""
        pattern = re.sub(r"[^A-Za-z0-9]+", "-", self.label).strip("-") or "pattern"
        seq = self.task_params.get("seq_len", "")
        return f"{self.task}-L{seq}-{pattern}-h{self.hidden_size}"

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able description (also stored in checkpoints to detect mismatches)."""
        return {
            "pattern": self.pattern if isinstance(self.pattern, str) else list(self.pattern),
            "task": self.task,
            "task_params": dict(self.task_params),
            "hidden_size": self.hidden_size,
            "embed_dim": self.embed_dim,
            "tie": self.tie,
            "layer_options": dict(self.layer_options),
        }

    def param_count(self) -> int:
        """Exact parameters of the language model, from the plugins' formulas (no build)."""
        return language_model_param_count(
            self.pattern,
            vocab_size=make_task(self.task, **self.task_params).vocab_size,
            hidden_size=self.hidden_size,
            embed_dim=self.embed_dim,
            tie=self.tie,
            **self.layer_options,
        )

    def state_size(self) -> int:
        """Recurrent-state elements per sequence in step mode (attention: its KV cache)."""
        count_options, _ = split_build_options(dict(self.layer_options))
        count_options.pop("embed_dim", None)
        return int(
            hybridzoo.state_size(self.pattern, hidden_size=self.hidden_size, **count_options)
        )


def _settings_dict(settings: TrainSettings) -> dict[str, Any]:
    return {k: v for k, v in attrs.asdict(settings).items() if k not in _RESUME_IGNORED}


def _parameter_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Weight decay on matrices only (not on biases, norms, or parameters marked
    ``_no_weight_decay``, e.g. Mamba's ``A_log`` and ``D``)."""
    decay, no_decay = [], []
    for param in model.parameters():
        if not param.requires_grad:
            continue
        if param.ndim >= 2 and not getattr(param, "_no_weight_decay", False):
            decay.append(param)
        else:
            no_decay.append(param)
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


def _autocast(device: torch.device, dtype: str) -> contextlib.AbstractContextManager:
    if dtype == "bfloat16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def _unique_param_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _save_atomic(payload: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    torch.save(payload, tmp)
    os.replace(tmp, path)


@torch.no_grad()
def evaluate(
    lm: LanguageModel,
    data: Batch,
    *,
    batch_size: int,
    context: DistContext,
    dtype: str = "float32",
) -> tuple[float, float]:
    """Held-out ``(loss, accuracy)`` over the scored positions of ``data`` (this rank's shard),
    summed over all ranks."""
    was_training = lm.training
    lm.eval()
    device = lm.embedding.weight.device
    loss_sum = correct = count = 0.0
    for start in range(0, len(data), batch_size):
        chunk = data[start : start + batch_size].to(device)
        with _autocast(device, dtype):
            logits = lm(chunk.inputs)
        loss, right, scored = masked_loss_and_accuracy(logits, chunk.targets)
        loss_sum += float(loss) * int(scored)
        correct += int(right)
        count += int(scored)
    lm.train(was_training)
    loss_sum, correct, count = context.all_reduce_sum([loss_sum, correct, count])
    if count == 0:
        return float("nan"), float("nan")
    return loss_sum / count, correct / count


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read an arena checkpoint written by :func:`train_run`, safely.

    The file is unpickled with ``weights_only=True``: only tensors, containers and plain values
    load, so a crafted file cannot run code. A truncated, foreign or hostile file raises
    :class:`~hybridzoo.CheckpointError` naming the file (never the unpickler's traceback).
    """
    path = Path(path)
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # UnpicklingError, RuntimeError (truncated zip), EOFError, ...
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(
            f"{path} is not a readable arena checkpoint ({type(exc).__name__}: {reason[:200]}); "
            "delete it, or start without --resume / with another --out folder"
        ) from None
    if not isinstance(checkpoint, dict) or checkpoint.get("format") != CHECKPOINT_FORMAT:
        found = checkpoint.get("format") if isinstance(checkpoint, dict) else type(checkpoint)
        raise CheckpointError(
            f"{path} is not an arena checkpoint of format {CHECKPOINT_FORMAT} (found {found!r}); "
            "delete it, or start without --resume / with another --out folder"
        )
    missing = sorted(set(_CHECKPOINT_KEYS) - set(checkpoint))
    if missing:
        raise CheckpointError(f"{path} is an incomplete arena checkpoint: no {', '.join(missing)}")
    return checkpoint


_CHECKPOINT_KEYS = (
    "format",
    "spec",
    "settings",
    "model",
    "optimizer",
    "scheduler",
    "rng",
    "step",
    "history",
    "train_seconds",
    "cpu_seconds",
    "solved_step",
    "result",
)


def _check_resumable(checkpoint: dict[str, Any], spec: RunSpec, settings: TrainSettings) -> None:
    if checkpoint.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"checkpoint format {checkpoint.get('format')!r} is not supported")
    if checkpoint["spec"] != spec.to_dict() or checkpoint["settings"] != _settings_dict(settings):
        raise ValueError(
            "the checkpoint was written by a run with other settings "
            f"(checkpoint: {checkpoint['spec']} {checkpoint['settings']}; now: {spec.to_dict()} "
            f"{_settings_dict(settings)}); start without --resume or use another --out folder"
        )


def train_run(
    spec: RunSpec,
    settings: TrainSettings,
    *,
    context: DistContext | None = None,
    checkpoint_path: str | Path | None = None,
    resume: bool = False,
    progress: bool = True,
    stop_after: int | None = None,
    measure_latency: bool = True,
    on_eval: Callable[[dict[str, Any]], None] | None = None,
) -> tuple[dict[str, Any], LanguageModel | None]:
    """Train ``spec`` with ``settings``; return its result record (see the arena docs) and the
    trained model (``None`` when a finished run was loaded from its checkpoint with ``resume``).

    Args:
        context: the distributed context (default: one process on CPU).
        checkpoint_path: where checkpoints are written every ``checkpoint_every`` steps and at the
            end (rank 0 only); ``None`` writes none.
        resume: continue from ``checkpoint_path`` when it exists (a finished run is not retrained).
        progress: show a tqdm progress bar (rank 0 only).
        stop_after: stop after this step as if interrupted (writes a checkpoint; for tests).
        measure_latency: time step-mode decoding after training (rank 0).
        on_eval: called with each evaluation record.
    """
    context = context or DistContext()
    device = context.device
    if settings.batch_size % context.world_size:
        raise ValueError(
            f"batch_size={settings.batch_size} must be divisible by the number of processes "
            f"({context.world_size})"
        )
    if settings.dtype == "bfloat16" and device.type != "cuda":
        raise ValueError(
            f"dtype='bfloat16' (autocast) is for CUDA devices; on {device.type} use float32 "
            "(several CPU kernels, e.g. the causal convolution, accept float32 and float64 only)"
        )
    task = make_task(spec.task, **spec.task_params)
    path = Path(checkpoint_path) if checkpoint_path is not None else None

    checkpoint: dict[str, Any] | None = None
    if resume and path is not None and path.exists():
        checkpoint = load_checkpoint(path)
        _check_resumable(checkpoint, spec, settings)
        if checkpoint["result"] is not None:
            return checkpoint["result"], None

    torch.manual_seed(settings.seed)
    build_options = {"dropout": settings.dropout, **spec.layer_options}
    lm = build_language_model(
        spec.pattern,
        vocab_size=task.vocab_size,
        hidden_size=spec.hidden_size,
        embed_dim=spec.embed_dim,
        tie=spec.tie,
        **build_options,
    )
    if settings.dtype == "float64":
        lm = lm.to(torch.float64)
    lm = lm.to(device)
    optimizer = torch.optim.AdamW(
        _parameter_groups(lm, settings.weight_decay), lr=settings.lr, betas=(0.9, 0.98)
    )
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, settings.lr_factor)

    step = 0
    history: list[dict[str, Any]] = []
    train_seconds = cpu_seconds = 0.0
    solved_step: int | None = None
    if checkpoint is not None:
        lm.load_state_dict(checkpoint["model"])
        optimizer.load_state_dict(checkpoint["optimizer"])
        scheduler.load_state_dict(checkpoint["scheduler"])
        torch.set_rng_state(checkpoint["rng"])
        if device.type == "cuda" and checkpoint.get("cuda_rng") is not None:
            torch.cuda.set_rng_state(checkpoint["cuda_rng"], device)
        step = checkpoint["step"]
        history = checkpoint["history"]
        train_seconds = checkpoint["train_seconds"]
        cpu_seconds = checkpoint["cpu_seconds"]
        solved_step = checkpoint["solved_step"]

    model: nn.Module = lm
    if context.distributed:
        ids = [device.index] if device.type == "cuda" else None
        model = nn.parallel.DistributedDataParallel(lm, device_ids=ids)

    shard = slice(context.rank, None, context.world_size)
    eval_data = task.generate(settings.eval_examples, split_seed(settings.seed, "eval", 0))[shard]
    bar = tqdm(
        total=settings.steps,
        initial=step,
        desc=f"{spec.label} (L={getattr(task, 'seq_len', '?')})",
        disable=not (progress and context.is_main),
        leave=True,
        dynamic_ncols=True,
        mininterval=0.5,
    )

    def save(result: dict[str, Any] | None) -> None:
        if path is None or not context.is_main:
            return
        _save_atomic(
            {
                "format": CHECKPOINT_FORMAT,
                "spec": spec.to_dict(),
                "settings": _settings_dict(settings),
                "model": lm.state_dict(),
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "rng": torch.get_rng_state(),
                "cuda_rng": torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
                "step": step,
                "history": history,
                "train_seconds": train_seconds,
                "cpu_seconds": cpu_seconds,
                "solved_step": solved_step,
                "result": result,
            },
            path,
        )

    lm.train()
    finished = solved_step is not None or step >= settings.steps
    train_loss = float("nan")
    while not finished:
        started, cpu_started = time.perf_counter(), time.process_time()
        batch = task.generate(settings.batch_size, split_seed(settings.seed, "train", step))
        batch = batch[shard].to(device)
        with _autocast(device, settings.dtype):
            logits = model(batch.inputs)
        loss, _, _ = masked_loss_and_accuracy(logits, batch.targets)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if settings.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(lm.parameters(), settings.grad_clip)
        optimizer.step()
        scheduler.step()
        step += 1
        train_loss = loss.item()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        train_seconds += time.perf_counter() - started
        cpu_seconds += time.process_time() - cpu_started
        bar.update(1)

        if step % settings.eval_every == 0 or step == settings.steps:
            eval_loss, accuracy = evaluate(
                lm, eval_data, batch_size=settings.batch_size, context=context, dtype=settings.dtype
            )
            (loss_sum,) = context.all_reduce_sum([train_loss])
            record = {
                "step": step,
                "loss": eval_loss,
                "accuracy": accuracy,
                "train_loss": loss_sum / context.world_size,  # this step's, over all ranks
                "lr": scheduler.get_last_lr()[0],
                "train_seconds": train_seconds,
            }
            history.append(record)
            bar.set_postfix(loss=f"{eval_loss:.3f}", acc=f"{accuracy:.3f}")
            if on_eval is not None:
                on_eval(record)
            target = settings.target_accuracy
            if target is not None and accuracy >= target:
                solved_step = step
        finished = solved_step is not None or step >= settings.steps
        if finished:
            break
        if step % settings.checkpoint_every == 0 or step == stop_after:
            save(None)
        if step == stop_after:
            bar.close()
            return {"done": False, "step": step, "history": history}, lm
    bar.close()

    if not history or history[-1]["step"] != step:
        eval_loss, accuracy = evaluate(
            lm, eval_data, batch_size=settings.batch_size, context=context, dtype=settings.dtype
        )
        history.append(
            {
                "step": step,
                "loss": eval_loss,
                "accuracy": accuracy,
                "train_loss": train_loss,
                "lr": scheduler.get_last_lr()[0],
                "train_seconds": train_seconds,
            }
        )
    final = history[-1]
    tokens = step * settings.batch_size * getattr(task, "seq_len", 0)
    latency = None
    if measure_latency and context.is_main:
        latency = step_latency(lm) * 1e3
    result = {
        "done": True,
        "name": spec.slug,
        "pattern": spec.label,
        "layers": list(lm.model.config.pattern),
        "task": spec.task,
        "task_params": dict(spec.task_params),
        "seq_len": getattr(task, "seq_len", None),
        "hidden_size": spec.hidden_size,
        "embed_dim": lm.embed_dim,
        "tied": lm.tied,
        "layer_options": dict(spec.layer_options),
        "params": _unique_param_count(lm),
        "state_size": spec.state_size(),
        "accuracy": final["accuracy"],
        "loss": final["loss"],
        "best_accuracy": max(r["accuracy"] for r in history),
        "solved": solved_step is not None,
        "solved_step": solved_step,
        "steps": step,
        "train_seconds": train_seconds,
        "cpu_seconds": cpu_seconds,
        "tokens_per_second": tokens / train_seconds if train_seconds > 0 else None,
        "step_latency_ms": latency,
        "world_size": context.world_size,
        "device": str(device),
        "dtype": settings.dtype,
        "history": history,
    }
    save(result)
    return result, lm

"""Train one model on one task (:func:`train_run`) with held-out evaluation, early stopping,
checkpoints and resume (several runs at once: :mod:`hybridzoo.arena.runner`).

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
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from hybridzoo.arena.checkpoint import (
    CHECKPOINT_FORMAT,
    check_resumable,
    load_checkpoint,
    save_atomic,
)
from hybridzoo.arena.distributed import DistContext
from hybridzoo.arena.lm import (
    LanguageModel,
    build_language_model,
    masked_loss_and_accuracy,
    step_latency,
)
from hybridzoo.arena.spec import DTYPES, RunSpec, TrainSettings, run_key, run_name
from hybridzoo.arena.tasks import Batch, generator, split_seed
from hybridzoo.errors import ConfigError

__all__ = ["DTYPES", "RunSpec", "TrainSettings", "evaluate", "load_checkpoint", "train_run"]

_POOL_CHUNK = 8192  # examples generated per call when building a fixed training set


class TrainingData:
    """The training batches of a run: fresh examples every step, or a fixed set of
    ``settings.train_examples`` examples reshuffled every epoch. Batch ``step`` depends only on
    ``(seed, step)``, so a resumed run sees the data an uninterrupted one would."""

    def __init__(self, task: Any, settings: TrainSettings) -> None:
        self.task, self.settings = task, settings
        self.pool: Batch | None = None
        size = settings.train_examples
        if size is not None:
            chunks = [
                task.generate(min(_POOL_CHUNK, size - start), split_seed(settings.seed, "train", i))
                for i, start in enumerate(range(0, size, _POOL_CHUNK))
            ]
            small = torch.int16 if task.vocab_size < 2**15 else torch.int32
            self.pool = Batch(
                torch.cat([c.inputs for c in chunks]).to(small),
                torch.cat([c.targets for c in chunks]).to(small),
            )

    @property
    def steps_per_epoch(self) -> int | None:
        """Steps of one pass over the fixed set (``None`` with fresh examples)."""
        if self.pool is None:
            return None
        return math.ceil(len(self.pool) / self.settings.batch_size)

    def batch(self, step: int) -> Batch:
        """The global batch of optimizer step ``step`` (0-based)."""
        settings = self.settings
        if self.pool is None:
            return self.task.generate(settings.batch_size, split_seed(settings.seed, "train", step))
        epoch, index = divmod(step, self.steps_per_epoch)
        order = torch.randperm(
            len(self.pool), generator=generator(split_seed(settings.seed, "train", 2**40 + epoch))
        )
        rows = order[index * settings.batch_size : (index + 1) * settings.batch_size]
        chosen = self.pool[rows]
        return Batch(chosen.inputs.long(), chosen.targets.long())


def _parameter_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Weight decay on matrices only (not on biases, norms, or parameters marked
    ``_no_weight_decay`` by their layer, e.g. an SSM's decay rates)."""
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


def _check_device(settings: TrainSettings, context: DistContext) -> None:
    if settings.batch_size % (context.world_size * settings.pack):
        raise ConfigError(
            f"batch_size={settings.batch_size} must be divisible by the number of processes "
            f"({context.world_size}) times the examples packed per row (pack={settings.pack})"
        )
    if settings.dtype == "bfloat16" and context.device.type != "cuda":
        raise ConfigError(
            f"dtype='bfloat16' (autocast) is for CUDA devices; on {context.device.type} use "
            "float32 (several CPU kernels, e.g. the causal convolution, accept float32 and "
            "float64 only)"
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
    on_step: Callable[[int], None] | None = None,
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
        on_step: called with the number of steps done after each step (progress of an arena).

    A run whose training loss becomes NaN or infinite stops there with ``diverged: true``.
    """
    context = context or DistContext()
    device = context.device
    _check_device(settings, context)
    task = spec.make_task()
    path = Path(checkpoint_path) if checkpoint_path is not None else None
    key = run_key(spec, settings)

    checkpoint: dict[str, Any] | None = None
    if resume and path is not None and path.exists():
        checkpoint = load_checkpoint(path)
        check_resumable(checkpoint, path, key, settings.resume_dict())
        if checkpoint["result"] is not None:
            return checkpoint["result"], None

    torch.manual_seed(settings.seed)
    lm = build_language_model(spec.pattern, dropout=settings.dropout, **spec.lm_arguments())
    if settings.dtype == "float64":
        lm = lm.to(torch.float64)
    lm = lm.to(device)
    optimizer = torch.optim.AdamW(
        _parameter_groups(lm, settings.weight_decay), lr=settings.lr, betas=(0.9, 0.98)
    )
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, settings.lr_factor)

    state: dict[str, Any] = {
        "step": 0,
        "history": [],
        "train_seconds": 0.0,
        "cpu_seconds": 0.0,
        "solved_step": None,
        "sequences": 0,
        "diverged": False,
    }
    if checkpoint is not None:
        lm.load_state_dict(checkpoint["model"])
        optimizer.load_state_dict(checkpoint["optimizer"])
        scheduler.load_state_dict(checkpoint["scheduler"])
        torch.set_rng_state(checkpoint["rng"])
        if device.type == "cuda" and checkpoint.get("cuda_rng") is not None:
            torch.cuda.set_rng_state(checkpoint["cuda_rng"], device)
        state.update({k: checkpoint[k] for k in state if k in checkpoint})

    model: nn.Module = lm
    if context.distributed:
        ids = [device.index] if device.type == "cuda" else None
        model = nn.parallel.DistributedDataParallel(lm, device_ids=ids)

    shard = slice(context.rank, None, context.world_size)
    data = TrainingData(task, settings)
    eval_data = task.generate(settings.eval_examples, split_seed(settings.seed, "eval", 0))[shard]
    bar = tqdm(
        total=settings.steps,
        initial=state["step"],
        desc=f"{spec.label} (L={task.seq_len}, lr={settings.lr:.3g}, seed {settings.seed})",
        disable=not (progress and context.is_main),
        leave=True,
        dynamic_ncols=True,
        mininterval=0.5,
    )

    def save(result: dict[str, Any] | None) -> None:
        if path is None or not context.is_main:
            return
        cuda_rng = torch.cuda.get_rng_state(device) if device.type == "cuda" else None
        save_atomic(
            {
                "format": CHECKPOINT_FORMAT,
                "key": key,
                "settings": settings.resume_dict(),
                "model": lm.state_dict(),
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "rng": torch.get_rng_state(),
                "cuda_rng": cuda_rng,
                **state,
                "result": result,
            },
            path,
        )

    def record(train_loss: float) -> dict[str, Any]:
        eval_loss, accuracy = evaluate(
            lm, eval_data, batch_size=settings.batch_size, context=context, dtype=settings.dtype
        )
        (loss_sum,) = context.all_reduce_sum([train_loss])
        entry = {
            "step": state["step"],
            "loss": eval_loss,
            "accuracy": accuracy,
            "train_loss": loss_sum / context.world_size,  # this step's, over all ranks
            "lr": scheduler.get_last_lr()[0],
            "train_seconds": state["train_seconds"],
        }
        state["history"].append(entry)
        bar.set_postfix(loss=f"{eval_loss:.3f}", acc=f"{accuracy:.3f}")
        if on_eval is not None:
            on_eval(entry)
        target = settings.target_accuracy
        if target is not None and accuracy >= target:
            state["solved_step"] = state["step"]
        return entry

    lm.train()
    train_loss = float("nan")
    while state["solved_step"] is None and state["step"] < settings.steps:
        started, cpu_started = time.perf_counter(), time.process_time()
        batch = data.batch(state["step"])
        state["sequences"] += len(batch)
        batch, seq_idx = batch[shard].to(device).packed(settings.pack)
        with _autocast(device, settings.dtype):
            logits = model(batch.inputs, seq_idx=seq_idx)
        loss, _, _ = masked_loss_and_accuracy(logits, batch.targets)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if settings.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(lm.parameters(), settings.grad_clip)
        optimizer.step()
        scheduler.step()
        state["step"] += 1
        step = state["step"]
        train_loss = loss.item()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        state["train_seconds"] += time.perf_counter() - started
        state["cpu_seconds"] += time.process_time() - cpu_started
        bar.update(1)
        if on_step is not None:
            on_step(step)
        (worst,) = context.all_reduce_sum([0.0 if math.isfinite(train_loss) else 1.0])
        if worst:
            state["diverged"] = True
            break
        if step % settings.eval_every == 0 or step == settings.steps:
            record(train_loss)
        if state["solved_step"] is not None or step >= settings.steps:
            break
        if step % settings.checkpoint_every == 0 or step == stop_after:
            save(None)
        if step == stop_after:
            bar.close()
            return {"done": False, "step": step, "history": state["history"]}, lm
    bar.close()

    history = state["history"]
    if not history or history[-1]["step"] != state["step"]:
        record(train_loss)
    result = _result(spec, settings, task, lm, state, context)
    if measure_latency and context.is_main:
        result["step_latency_ms"] = step_latency(lm) * 1e3
    result["name"] = run_name(spec, settings)
    save(result)
    return result, lm


def _result(
    spec: RunSpec,
    settings: TrainSettings,
    task: Any,
    lm: LanguageModel,
    state: dict[str, Any],
    context: DistContext,
) -> dict[str, Any]:
    history, steps = state["history"], state["step"]
    final = history[-1]
    seconds = state["train_seconds"]
    tokens = state["sequences"] * task.seq_len
    return {
        "done": True,
        "model": spec.label,
        "pattern": spec.pattern if isinstance(spec.pattern, str) else " ".join(spec.pattern),
        "layers": list(lm.model.config.pattern),
        "task": spec.task,
        "task_params": dict(spec.task_params),
        "seq_len": task.seq_len,
        "chance": float(task.chance_level),
        "hidden_size": spec.hidden_size,
        "embed_dim": lm.config.embed_dim,
        "tied": lm.tied,
        "layer_options": dict(spec.layer_options),
        "lm_options": dict(spec.lm_options),
        "params": sum(p.numel() for p in lm.parameters()),
        "state_size": spec.state_size(),
        "flops_per_token": spec.flops_per_token(),
        "lr": settings.lr,
        "seed": settings.seed,
        "batch_size": settings.batch_size,
        "accuracy": final["accuracy"],
        "loss": final["loss"],
        "best_accuracy": max((r["accuracy"] for r in history), default=float("nan")),
        "solved": state["solved_step"] is not None,
        "solved_step": state["solved_step"],
        "diverged": state["diverged"],
        "steps": steps,
        "sequences": state["sequences"],
        "train_seconds": seconds,
        "cpu_seconds": state["cpu_seconds"],
        "seconds_per_step": seconds / steps if steps else None,
        "tokens_per_second": tokens / seconds if seconds > 0 else None,
        "step_latency_ms": None,
        "world_size": context.world_size,
        "device": str(context.device),
        "dtype": settings.dtype,
        "history": history,
    }

"""Run many trainings: one after the other in this process, or ``jobs`` at once in worker
processes (one thread each by default), with one progress bar for the whole arena.

Every run keeps its own checkpoint and resumes on its own; a run's result depends only on its
spec and settings, so ``--jobs 4`` gives the numbers ``--jobs 1`` gives. Worker processes are
started with ``spawn`` (no fork of a process that holds thread pools); they find layers and
tasks through the installed plugins, so a layer or task registered at run time cannot run in a
worker (:func:`check_importable` says so before anything starts).
"""

from __future__ import annotations

import multiprocessing
import queue
import threading
from collections.abc import Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from hybridzoo.arena.distributed import DistContext
from hybridzoo.arena.plan import Run
from hybridzoo.errors import ConfigError

__all__ = ["check_importable", "execute"]


def check_importable(runs: Sequence[Run]) -> None:
    """Refuse runs whose layers or task exist only in this process (registered at run time)."""
    import hybridzoo
    from hybridzoo.arena.plugins import RUNTIME, get_arena_registry

    registry, arena = hybridzoo.get_registry(), get_arena_registry()
    local = set()
    for run in runs:
        for layer in run.spec.key()["model"]["pattern"]:
            if registry.source(layer) == (None, None):
                local.add(f"layer {layer!r}")
        if arena.source("task", run.spec.task) == RUNTIME:
            local.add(f"task {run.spec.task!r}")
    if local:
        raise ConfigError(
            f"--jobs > 1 runs each training in a fresh process, which does not see the "
            f"{', '.join(sorted(local))} registered at run time: install it as a plugin "
            "(entry points) or use --jobs 1"
        )


def _worker_setup(threads: int) -> None:
    import torch

    torch.use_deterministic_algorithms(True, warn_only=True)
    if threads > 0:
        torch.set_num_threads(threads)


def _train(run: Run, path: str, resume: bool, progress: Any) -> dict[str, Any]:
    from hybridzoo.arena.train import train_run

    def on_step(step: int) -> None:
        if progress is not None and (step % 5 == 0 or step == run.settings.steps):
            progress.put((run.name, step))

    result, _ = train_run(
        run.spec,
        run.settings,
        checkpoint_path=path,
        resume=resume,
        progress=False,
        on_step=on_step,
    )
    return result


def _line(run: Run, result: dict[str, Any]) -> str:
    if result.get("diverged"):
        outcome = "diverged (non-finite loss)"
    elif result.get("solved"):
        outcome = f"solved at step {result['solved_step']}"
    else:
        outcome = f"not solved in {result['steps']} steps"
    return (
        f"  {run.model} L={result['seq_len']} h={result['hidden_size']} lr={run.settings.lr:.3g} "
        f"seed {run.settings.seed}: accuracy {result['accuracy']:.3f}, {outcome}"
    )


class _Progress:
    """One bar for the whole arena, advanced by runs in this process or in workers."""

    def __init__(self, runs: Sequence[Run], jobs: int, show: bool) -> None:
        self.show = show
        self.bar = tqdm(
            total=sum(r.settings.steps for r in runs),
            desc=f"arena ({len(runs)} runs, {jobs} at a time)",
            unit="step",
            disable=not show or not runs,
            dynamic_ncols=True,
            mininterval=1.0,
        )
        self.done: dict[str, int] = {}
        self.lock = threading.Lock()  # the relay thread of --jobs advances it too

    def advance(self, name: str, step: int) -> None:
        with self.lock:
            self.bar.update(max(0, step - self.done.get(name, 0)))
            self.done[name] = max(step, self.done.get(name, 0))

    def finish(self, run: Run, result: dict[str, Any]) -> None:
        self.advance(run.name, run.settings.steps)  # early stops jump to the run's end
        if self.show:
            self.bar.write(_line(run, result))


def execute(
    runs: Sequence[Run],
    *,
    out: Path,
    jobs: int = 1,
    threads: int = 1,
    context: DistContext | None = None,
    resume: bool = False,
    progress: bool = True,
) -> Iterator[tuple[Run, dict[str, Any]]]:
    """Train ``runs``; yield ``(run, result)`` as each finishes (in completion order)."""
    context = context or DistContext()
    checkpoints = out / "checkpoints"
    bar = _Progress(runs, jobs, progress and context.is_main)
    try:
        if jobs == 1 or context.distributed or len(runs) <= 1:
            yield from _serial(runs, checkpoints, context, resume, bar)
        else:
            check_importable(runs)
            yield from _parallel(runs, checkpoints, (jobs, threads), resume, bar)
    finally:
        bar.bar.close()


def _serial(
    runs: Sequence[Run], checkpoints: Path, context: DistContext, resume: bool, bar: _Progress
) -> Iterator[tuple[Run, dict[str, Any]]]:
    from hybridzoo.arena.train import train_run

    for run in runs:
        result, _ = train_run(
            run.spec,
            run.settings,
            context=context,
            checkpoint_path=checkpoints / f"{run.name}.pt",
            resume=resume,
            progress=False,
            on_step=lambda step, name=run.name: bar.advance(name, step),
        )
        bar.finish(run, result)
        yield run, result


def _parallel(
    runs: Sequence[Run],
    checkpoints: Path,
    workers: tuple[int, int],
    resume: bool,
    bar: _Progress,
) -> Iterator[tuple[Run, dict[str, Any]]]:
    jobs, threads = workers
    spawn = multiprocessing.get_context("spawn")
    with spawn.Manager() as manager:
        updates = manager.Queue()
        stop = threading.Event()

        def relay() -> None:  # worker progress → the bar, from a thread of this process
            while not stop.is_set():
                try:
                    name, step = updates.get(timeout=0.2)
                except queue.Empty:
                    continue
                except (EOFError, OSError):
                    return
                bar.advance(name, step)

        thread = threading.Thread(target=relay, daemon=True)
        thread.start()
        pool = ProcessPoolExecutor(
            max_workers=min(jobs, len(runs)),
            mp_context=spawn,
            initializer=_worker_setup,
            initargs=(threads,),
        )
        try:
            pending = {
                pool.submit(_train, run, str(checkpoints / f"{run.name}.pt"), resume, updates): run
                for run in runs
            }
            while pending:
                finished, _ = wait(pending, return_when=FIRST_COMPLETED)
                for future in finished:
                    run = pending.pop(future)
                    result = future.result()  # a failed run fails the arena, as in --jobs 1
                    bar.finish(run, result)
                    yield run, result
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
            stop.set()
            thread.join()

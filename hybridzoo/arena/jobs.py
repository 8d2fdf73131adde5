"""Run many trainings: one after the other in this process, or ``jobs`` at once in worker
processes (one thread each by default), with one progress bar for the whole arena.

Every run keeps its own checkpoint and resumes on its own; a run's result depends only on its
spec and settings, so ``--jobs 4`` gives the numbers ``--jobs 1`` gives. Worker processes are
started with ``spawn`` (no fork of a process that holds thread pools), once per arena, and
reused by every stage; they find layers and tasks through the installed plugins, so a layer or
task registered at run time cannot run in a worker (:func:`check_importable` says so before
anything starts).
"""

from __future__ import annotations

import multiprocessing
import queue
import threading
from collections.abc import Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from pathlib import Path
from types import TracebackType
from typing import Any

from tqdm.auto import tqdm

from hybridzoo.arena.distributed import DistContext
from hybridzoo.arena.plan import Run
from hybridzoo.errors import ConfigError

__all__ = ["Executor", "check_importable"]


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


_UPDATES: Any = None  # in a worker: the queue its progress goes to


def _worker_setup(threads: int, updates: Any) -> None:
    import torch

    global _UPDATES
    _UPDATES = updates
    torch.use_deterministic_algorithms(True, warn_only=True)
    if threads > 0:
        torch.set_num_threads(threads)


def _train(run: Run, path: str, resume: bool) -> dict[str, Any]:
    from hybridzoo.arena.train import train_run

    def on_step(step: int) -> None:
        if step % 5 == 0 or step == run.settings.steps:
            _UPDATES.put((run.name, step))

    result, _ = train_run(
        run.spec, run.settings, checkpoint_path=path, resume=resume, progress=False, on_step=on_step
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


class Executor:
    """Trains runs, ``jobs`` at a time; use it as a context manager around every stage.

    Args:
        jobs: runs at once (1: in this process; always 1 under torchrun).
        threads: CPU threads per worker (0: torch's default).
        context: the distributed context (runs are trained in this process under torchrun).
        progress: show one progress bar for all runs (rank 0).
    """

    def __init__(
        self, *, jobs: int = 1, threads: int = 1, context: DistContext | None = None,
        progress: bool = True,
    ) -> None:  # fmt: skip
        self.context = context or DistContext()
        self.jobs = 1 if self.context.distributed else jobs
        self.threads = threads
        self.show = progress and self.context.is_main
        self._pool: ProcessPoolExecutor | None = None
        self._updates: Any = None
        self._relay: threading.Thread | None = None
        self._stop = threading.Event()
        self._lock = threading.Lock()  # the relay thread and this one both advance the bar
        self._bar: Any = None
        self._done: dict[str, int] = {}

    def __enter__(self) -> Executor:
        return self

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._stop.set()
            self._relay.join()

    def _start_workers(self) -> None:
        spawn = multiprocessing.get_context("spawn")
        self._updates = spawn.Queue()
        self._pool = ProcessPoolExecutor(
            max_workers=self.jobs,
            mp_context=spawn,
            initializer=_worker_setup,
            initargs=(self.threads, self._updates),
        )
        self._relay = threading.Thread(target=self._forward, daemon=True)
        self._relay.start()

    def _forward(self) -> None:  # worker progress → the bar
        while not self._stop.is_set():
            try:
                name, step = self._updates.get(timeout=0.2)
            except queue.Empty:
                continue
            except (EOFError, OSError):
                return
            self._advance(name, step)

    def _advance(self, name: str, step: int) -> None:
        with self._lock:
            if self._bar is not None:
                self._bar.update(max(0, step - self._done.get(name, 0)))
            self._done[name] = max(step, self._done.get(name, 0))

    def _finish(self, run: Run, result: dict[str, Any]) -> None:
        self._advance(run.name, run.settings.steps)  # early stops jump to the run's end
        if self.show:
            self._bar.write(_line(run, result))

    def run(
        self, runs: Sequence[Run], *, out: Path, resume: bool = False
    ) -> Iterator[tuple[Run, dict[str, Any]]]:
        """Train ``runs``; yield ``(run, result)`` as each finishes (in completion order)."""
        checkpoints = out / "checkpoints"
        self._bar = tqdm(
            total=sum(r.settings.steps for r in runs),
            desc=f"arena ({len(runs)} runs, {self.jobs} at a time)",
            unit="step",
            disable=not self.show or not runs,
            dynamic_ncols=True,
            mininterval=1.0,
        )
        try:
            if self.jobs == 1 or len(runs) <= 1:
                yield from self._serial(runs, checkpoints, resume)
            else:
                check_importable(runs)
                yield from self._parallel(runs, checkpoints, resume)
        finally:
            self._bar.close()

    def _serial(
        self, runs: Sequence[Run], checkpoints: Path, resume: bool
    ) -> Iterator[tuple[Run, dict[str, Any]]]:
        from hybridzoo.arena.train import train_run

        for run in runs:
            result, _ = train_run(
                run.spec,
                run.settings,
                context=self.context,
                checkpoint_path=checkpoints / f"{run.name}.pt",
                resume=resume,
                progress=False,
                on_step=lambda step, name=run.name: self._advance(name, step),
            )
            self._finish(run, result)
            yield run, result

    def _parallel(
        self, runs: Sequence[Run], checkpoints: Path, resume: bool
    ) -> Iterator[tuple[Run, dict[str, Any]]]:
        if self._pool is None:
            self._start_workers()
        pending = {
            self._pool.submit(_train, run, str(checkpoints / f"{run.name}.pt"), resume): run
            for run in runs
        }
        try:
            while pending:
                finished, _ = wait(pending, return_when=FIRST_COMPLETED)
                for future in finished:
                    run = pending.pop(future)
                    result = future.result()  # a failed run fails the arena, as in --jobs 1
                    self._finish(run, result)
                    yield run, result
        finally:
            for future in pending:
                future.cancel()

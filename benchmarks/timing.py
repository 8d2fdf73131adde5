"""What the benchmarks share: candidates timed round by round (interleaved), so that a change of
machine load hits them alike, or each alone at its best; wall time and process CPU time, minimum
and median; the peak resident set of a call (Linux); the common options and the JSON files."""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

#: glibc returns every block above MALLOC_MMAP_THRESHOLD_ (32 MiB at most by default) to the
#: system when it is freed, so each large tensor is page-faulted in afresh (PyTorch has no caching
#: allocator on CPU): at L = 16384 that is most activations. --malloc-reuse keeps freed blocks.
MALLOC_REUSE = {
    "MALLOC_MMAP_THRESHOLD_": str(1 << 32),
    "MALLOC_TRIM_THRESHOLD_": str(1 << 34),
    "MALLOC_TOP_PAD_": str(1 << 28),
}


def interleaved(runs: dict[str, Callable[[], None]], repeat: int) -> dict[str, dict[str, float]]:
    """Each callable once as a warm-up, then ``repeat`` rounds of each in turn.

    Returns per name: ``min_ms``, ``median_ms`` (wall) and ``cpu_min_ms`` (process CPU time, all
    threads: less sensitive to other processes on a loaded machine).
    """
    for run in runs.values():
        run()
    wall: dict[str, list[float]] = {name: [] for name in runs}
    cpu: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(repeat):
        for name, run in runs.items():
            start, start_cpu = time.perf_counter(), time.process_time()
            run()
            wall[name].append(time.perf_counter() - start)
            cpu[name].append(time.process_time() - start_cpu)
    return {
        name: {
            "min_ms": 1e3 * min(wall[name]),
            "median_ms": 1e3 * statistics.median(wall[name]),
            "cpu_min_ms": 1e3 * min(cpu[name]),
        }
        for name in runs
    }


def time_best(fn: Callable[[], Any], repeats: int, warmup: int = 1) -> tuple[float, float]:
    """The smallest ``(wall-clock, process CPU)`` seconds of ``fn`` over ``repeats`` runs after
    ``warmup``. The minimum is the estimate least disturbed by other processes; CPU time (all
    threads together) is the robust one on a machine that other processes share, wall clock is
    what a user waits."""
    for _ in range(warmup):
        fn()
    wall = cpu = float("inf")
    for _ in range(repeats):
        c0, t0 = time.process_time(), time.perf_counter()
        fn()
        wall = min(wall, time.perf_counter() - t0)
        cpu = min(cpu, time.process_time() - c0)
    return wall, cpu


def _forward(body: Callable[[torch.Tensor], Any], x: torch.Tensor) -> Callable[[], None]:
    def forward() -> None:
        with torch.no_grad():
            body(x)

    return forward


def module_runs(
    module: torch.nn.Module, x: torch.Tensor, grad: torch.Tensor | None = None
) -> dict[str, Callable[[], None]]:
    """``{"fwd": ..., "fwd+bwd": ...}`` for ``module`` on ``x``: the forward under
    ``torch.no_grad()``, and the forward with ``(y · grad).sum().backward()`` (``y.sum()`` when
    ``grad`` is None) from one leaf copy of ``x``: the gradients of the input and of every
    parameter."""
    xg = x.clone().requires_grad_(True)

    def backward() -> None:
        module.zero_grad(set_to_none=True)
        xg.grad = None
        y = module(xg)
        (y if grad is None else y * grad).sum().backward()

    return {"fwd": _forward(module, x), "fwd+bwd": backward}


def output_grad_runs(
    body: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, module: torch.nn.Module
) -> dict[str, Callable[[], None]]:
    """``{"fwd": ..., "fwd+bwd": ...}`` for ``body`` (a function of ``module``'s weights) on
    ``x``: the forward under ``torch.no_grad()``, and ``body(x').backward(g)`` for a fresh leaf
    ``x'`` equal to ``x`` and a random output gradient ``g`` drawn here (``randn_like(x)``)."""
    grad_y = torch.randn_like(x)

    def forward_backward() -> None:
        module.zero_grad(set_to_none=True)
        body(x.detach().requires_grad_(True)).backward(grad_y)

    return {"fwd": _forward(body, x), "fwd+bwd": forward_backward}


def status_kib(field: str) -> int:
    """A field of ``/proc/self/status`` in KiB (``VmRSS``: the resident set; ``VmHWM``: its
    peak)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def reset_peak() -> bool:
    """Reset the resident-set high-water mark (``VmHWM``); False where that is not allowed."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        return False
    return True


def add_options(parser: argparse.ArgumentParser, **defaults: int | float) -> None:
    """One option per keyword, ``--name-with-dashes``, of the type of its default (int or
    float), in the order given."""
    for name, default in defaults.items():
        if type(default) not in (int, float):
            raise TypeError(f"{name}: an int or float default, not {default!r}")
        parser.add_argument("--" + name.replace("_", "-"), type=type(default), default=default)


def write_json(path: str | Path, data: Any) -> Path:
    """Write ``data`` as indented JSON (a final newline) to ``path``, creating its folder."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2) + "\n")
    return path


def meta(**fields: object) -> dict[str, object]:
    """The run's settings plus the machine, torch, threads and the load average."""
    return {
        **fields,
        "threads": torch.get_num_threads(),
        "load_average_1min": os.getloadavg()[0],
        "torch": torch.__version__,
        "processor": platform.processor() or platform.machine(),
        "date": time.strftime("%Y-%m-%d %H:%M"),
    }

"""Timing shared by the layer benchmarks: candidates timed round by round (interleaved), so that a
change of machine load hits them alike; wall time and process CPU time, minimum and median."""

from __future__ import annotations

import os
import platform
import statistics
import time
from collections.abc import Callable

import torch


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

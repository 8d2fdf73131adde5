"""Speed and peak memory of the sliding-window attention body (CPU).

For each sequence length L and window, a fresh subprocess builds a ``SlidingWindowAttention``
(float32, B=4, H=256, 4 heads × 64) and measures

- ``fwd``: forward under ``torch.no_grad()``;
- ``fwd+bwd``: forward, ``y.sum().backward()`` (gradients for the parameters and the input).

Time: median (and minimum) of ``--repeat`` runs after one warm-up run (``time.perf_counter``).
On a shared machine the median is noisy: compare minima.

Memory: torch's CPU allocations are invisible to ``tracemalloc``, so we measure the process's
resident set (RSS) from ``/proc/self/status``, in a second fresh subprocess started with
``MALLOC_MMAP_THRESHOLD_=131072``: glibc then serves every block above 128 KiB (every tensor that
matters) with its own ``mmap`` and unmaps it on free, so the RSS follows the live tensors, with no
reuse of freed heap pages and no fragmentation (fixing the threshold also stops glibc from raising
it dynamically). That child runs the call once (warm-up), records ``VmRSS`` (model, input and
gradient buffers alive), resets the high-water mark by writing ``5`` to ``/proc/self/clear_refs``,
runs the call again and reports peak = ``VmHWM - VmRSS_before``: the extra memory the call needed
at its peak, output included (reproducible to about 0.1 MiB). Timing runs in its own child without
that setting, which would add a page-fault cost to every allocation. If ``clear_refs`` is not
writable the record says so (the peak is then the process's lifetime peak, an upper bound).

Usage: ``python benchmarks/bench_attention.py [--lengths 1024 4096 16384] [--windows 60 128]
[--repeat 3] [--out bench_attention.json]``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

from timing import add_options, reset_peak, status_kib, write_json


def child(
    length: int, window: int | None, mode: str, measure: str, repeat: int, batch: int, hidden: int
) -> dict:
    """Measure one configuration (``measure`` = "time" or "memory") in this process."""
    import torch

    from hybridzoo_plugins.attention.layer import SlidingWindowAttention

    torch.manual_seed(0)
    layer = SlidingWindowAttention(hidden, num_heads=4, head_dim=64, window_size=window)
    x = torch.randn(batch, length, hidden, requires_grad=(mode == "fwd+bwd"))

    def run() -> None:
        if mode == "fwd":
            with torch.no_grad():
                layer(x)
        else:
            layer.zero_grad(set_to_none=True)
            x.grad = None
            layer(x).sum().backward()

    run()  # warm-up
    record: dict = {"L": length, "window": window, "mode": mode, "batch": batch, "hidden": hidden}
    if measure == "time":
        times = []
        for _ in range(repeat):
            start = time.perf_counter()
            run()
            times.append(time.perf_counter() - start)
        record.update(
            time_s=statistics.median(times),
            time_min_s=min(times),
            threads=torch.get_num_threads(),
            load_average_1min=os.getloadavg()[0],  # > threads: timings are contended
        )
        return record
    before = status_kib("VmRSS")
    method = "VmHWM - VmRSS, MALLOC_MMAP_THRESHOLD_=" + os.environ.get("MALLOC_MMAP_THRESHOLD_", "")
    if not reset_peak():
        method = "clear_refs not writable: VmHWM is the process's lifetime peak (an upper bound)"
    run()
    record.update(peak_mib=(status_kib("VmHWM") - before) / 1024, memory_method=method)
    return record


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lengths", type=int, nargs="+", default=[1024, 4096, 16384])
    parser.add_argument("--windows", type=int, nargs="+", default=[60, 128])
    parser.add_argument("--modes", nargs="+", default=["fwd", "fwd+bwd"])
    add_options(parser, batch=4, hidden=256, repeat=3)
    parser.add_argument("--out", default="bench_attention.json")
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)  # L WINDOW MODE MEASURE
    args = parser.parse_args()

    if args.child:
        length, window, mode, measure = int(args.child[0]), int(args.child[1]), *args.child[2:]
        record = child(length, window, mode, measure, args.repeat, args.batch, args.hidden)
        print(json.dumps(record))
        return

    memory_env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="131072")
    records = []
    header = (
        f"{'L':>6} {'window':>6} {'mode':>8} {'median ms':>10} {'min ms':>10} {'peak MiB':>9} "
        f"{'MiB/1k tok':>10}"
    )
    print(header)
    print("-" * len(header))
    for window in args.windows:
        for length in args.lengths:
            for mode in args.modes:
                record = {}
                for measure, env in (("time", os.environ), ("memory", memory_env)):
                    cmd = [sys.executable, __file__, "--child", str(length), str(window), mode]
                    cmd += [measure, "--repeat", str(args.repeat), "--batch", str(args.batch)]
                    cmd += ["--hidden", str(args.hidden)]
                    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
                    record.update(json.loads(out.stdout.strip().splitlines()[-1]))
                records.append(record)
                per_k = record["peak_mib"] / (length / 1024)
                print(
                    f"{length:>6} {window:>6} {mode:>8} {record['time_s'] * 1e3:>10.1f} "
                    f"{record['time_min_s'] * 1e3:>10.1f} "
                    f"{record['peak_mib']:>9.1f} {per_k:>10.2f}",
                    flush=True,
                )
    write_json(args.out, {"benchmark": "attention", "records": records})
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

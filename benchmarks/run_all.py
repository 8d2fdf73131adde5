"""Run every benchmark in one go (one machine, one session) and collect the JSON files.

    python benchmarks/run_all.py --out-dir benchmarks/results [--quick]

Each script prints its own table; the JSON files land in ``--out-dir`` with a ``meta.json``
(date, machine, torch, threads) so that the README table can name where it was measured.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def scripts(quick: bool) -> list[tuple[str, list[str]]]:
    lengths = ["1024", "4096"] if quick else ["1024", "4096", "16384"]
    scaling = ["--scaling-lengths", "1024", "4096", "--scaling-bound", "4.5"] if quick else []
    return [
        ("mamba", ["bench_mamba.py", "--lengths", *lengths]),
        ("gla", ["bench_gla.py", "--lengths", *lengths]),
        ("rwkv", ["bench_rwkv.py", "--lengths", *lengths]),
        ("attention", ["bench_attention.py", "--lengths", *lengths, "--windows", "60"]),
        ("mamba2", ["bench_mamba2.py", *scaling]),
        ("gated_deltanet", ["bench_gated_deltanet.py", *scaling]),
        ("moe", ["bench_moe.py"]),
        ("scaling", ["bench_scaling.py", *(["--lengths", "1024", "4096"] if quick else [])]),
        ("step", ["bench_step.py"]),
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out-dir", type=Path, default=HERE / "results")
    parser.add_argument("--quick", action="store_true", help="L in {1024, 4096} only")
    parser.add_argument("--only", nargs="*", default=None, help="names to run (default: all)")
    args = parser.parse_args()
    args.out_dir.mkdir(parents=True, exist_ok=True)
    import torch

    meta = {
        "date": time.strftime("%Y-%m-%d"),
        "machine": platform.machine(),
        "processor": platform.processor() or platform.uname().machine,
        "cpus": os.cpu_count(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "python": platform.python_version(),
    }
    (args.out_dir / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
    status = 0
    for name, argv in scripts(args.quick):
        if args.only is not None and name not in args.only:
            continue
        out = args.out_dir / f"{name}.json"
        print(f"\n=== {name}: {' '.join(argv)}", flush=True)
        start = time.perf_counter()
        rc = subprocess.call([sys.executable, str(HERE / argv[0]), *argv[1:], "--out", str(out)])
        print(f"=== {name}: exit {rc} after {time.perf_counter() - start:.0f} s", flush=True)
        status = status or rc
    return status


if __name__ == "__main__":
    sys.exit(main())

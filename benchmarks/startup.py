"""Start-up time of ``import hybridzoo`` and of the ``hybridzoo plugins`` / ``layers`` commands.

Each command runs ``--repeat`` times as a fresh subprocess, with and without the plugins
(``HYBRIDZOO_DISABLE_PLUGIN_AUTOLOAD=1``), next to two baselines: a bare ``python -c pass`` and
``python -c "import torch"`` (what listing would cost if it imported the layers' modules). Runs
go in interleaved rounds (every command once per round, after ``--warmup`` unmeasured rounds that
warm the OS file cache), so that a change of machine load affects every command alike. The wall
time of each run is taken around ``subprocess.run`` (``time.perf_counter``); the table shows the
median and the minimum in milliseconds. On a shared machine compare minima.

Every ``hybridzoo`` command also reports whether torch ended up imported: the plugins JSON says so
(``torch_imported``), and for the others a ``-X importtime`` run is checked for a ``torch`` line.

Usage: ``python benchmarks/startup.py [--repeat 15] [--out benchmarks/results/startup.json]``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ENV_VARS = (
    "HYBRIDZOO_DISABLE_PLUGIN_AUTOLOAD",
    "HYBRIDZOO_DISABLE_PLUGINS",
    "HYBRIDZOO_STRICT_PLUGINS",
)


def hybridzoo_command() -> list[str]:
    """The installed ``hybridzoo`` script next to this interpreter, else ``python -m hybridzoo``."""
    script = Path(sys.executable).with_name("hybridzoo")
    if script.exists():
        return [str(script)]
    found = shutil.which("hybridzoo")
    return [found] if found else [sys.executable, "-m", "hybridzoo"]


def cases() -> list[tuple[str, list[str], bool | None]]:
    """``(label, argv, autoload)``; ``autoload=None`` for the baselines (no hybridzoo)."""
    py = sys.executable
    hz = hybridzoo_command()
    out: list[tuple[str, list[str], bool | None]] = [
        ("python -c pass", [py, "-c", "pass"], None),
        ('python -c "import torch"', [py, "-c", "import torch"], None),
    ]
    for autoload in (True, False):
        out += [
            ('python -c "import hybridzoo"', [py, "-c", "import hybridzoo"], autoload),
            ("hybridzoo plugins", [*hz, "plugins"], autoload),
            ("hybridzoo plugins --json", [*hz, "plugins", "--json"], autoload),
            ("hybridzoo layers", [*hz, "layers"], autoload),
        ]
    return out


def environment(autoload: bool | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ENV_VARS}
    if autoload is False:
        env["HYBRIDZOO_DISABLE_PLUGIN_AUTOLOAD"] = "1"
    return env


def run_once(argv: list[str], env: dict[str, str]) -> float:
    """Wall time in seconds of one run of ``argv``; raises if it fails."""
    start = time.perf_counter()
    done = subprocess.run(argv, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"{argv} exited {done.returncode}: {done.stderr[-2000:]}")
    return elapsed


def imports_torch(argv: list[str], env: dict[str, str]) -> bool:
    """Whether running ``argv`` imports torch (``-X importtime`` lists every module imported)."""
    env = {**env, "PYTHONPROFILEIMPORTTIME": "1"}
    done = subprocess.run(argv, env=env, capture_output=True, text=True)
    return any(
        line.startswith("import time:") and line.split("|")[-1].strip() == "torch"
        for line in done.stderr.splitlines()
    )


def plugin_summary(env: dict[str, str]) -> dict[str, Any]:
    done = subprocess.run([*hybridzoo_command(), "plugins", "--json"], env=env, capture_output=True)
    report = json.loads(done.stdout)
    return {
        "plugins": [(p["name"], p["distribution"], p["status"]) for p in report["plugins"]],
        "counts": report["counts"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=15, help="measured runs per command")
    parser.add_argument("--warmup", type=int, default=2, help="unmeasured runs first")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/startup.json"))
    args = parser.parse_args()

    todo = cases()
    # interleaved rounds (each command once per round), so that a change of machine load
    # during the run affects every command alike
    times: list[list[float]] = [[] for _ in todo]
    for round_ in range(args.warmup + args.repeat):
        for i, (_, argv, autoload) in enumerate(todo):
            elapsed = run_once(argv, environment(autoload))
            if round_ >= args.warmup:
                times[i].append(elapsed)

    records = []
    header = f"{'command':32} {'plugins':8} {'median ms':>10} {'min ms':>8} {'torch':>6}"
    print(header)
    print("-" * len(header))
    for (label, argv, autoload), runs in zip(todo, times, strict=True):
        torch_loaded = imports_torch(argv, environment(autoload))
        record = {
            "command": label,
            "argv": argv,
            "plugins": {None: "-", True: "on", False: "off"}[autoload],
            "median_ms": 1000 * statistics.median(runs),
            "min_ms": 1000 * min(runs),
            "mean_ms": 1000 * statistics.fmean(runs),
            "stdev_ms": 1000 * statistics.stdev(runs) if len(runs) > 1 else 0.0,
            "runs": len(runs),
            "imports_torch": torch_loaded,
        }
        records.append(record)
        print(
            f"{label:32} {record['plugins']:8} {record['median_ms']:10.0f} "
            f"{record['min_ms']:8.0f} {'yes' if torch_loaded else 'no':>6}"
        )
    result = {
        "benchmark": "startup",
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "load_average": os.getloadavg(),
        "installed_plugins": plugin_summary(environment(True)),
        "records": records,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()

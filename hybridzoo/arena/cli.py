"""``hybridzoo arena``: the command-line face of the arena.

The core's CLI (``hybridzoo/cli/``) adds the ``arena`` subcommand with :func:`configure_parser`
and calls :func:`run` with the parsed arguments. A run starts from a preset (``default``;
``--quick``, ``--paper`` or ``--preset NAME``), contributed by a plugin; every option given on
the command line overrides the preset's value. Under ``torchrun`` every rank runs the same
command; rank 0 alone prints and writes files.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

from hybridzoo.cli.values import parse_assignment
from hybridzoo.subcommand import run_alone
from hybridzoo.validate import Validator, at_least, in_range, positive

DEFAULT_PRESET = "default"


def _typed(parse: Callable[[str], Any], validator: Validator) -> Callable[[str], Any]:
    def convert(text: str) -> Any:
        try:
            value = parse(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"must be {validator.expected}, got {text!r}"
            ) from None
        problem = validator.problem(value)
        if problem is not None:
            raise argparse.ArgumentTypeError(str(problem))
        return value

    convert.__name__ = validator.expected  # argparse names the type in its error
    return convert


POSITIVE_INT = _typed(int, at_least(1))
NON_NEGATIVE_INT = _typed(int, at_least(0))
POSITIVE = _typed(float, positive)  # finite and > 0: `--lr inf` is a usage error
NON_NEGATIVE = _typed(float, in_range(0.0, math.inf, high_open=True))
FRACTION = _typed(float, in_range(0.0, 1.0, high_open=True))
TARGET = _typed(float, in_range(0.0, 1.0, low_open=True))


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Add every ``hybridzoo arena`` option to ``parser``."""
    parser.description = (
        "Train several models with matched parameter budgets on a synthetic recall task and "
        "print a leaderboard (accuracy over seeds against chance, parameters, state size, "
        "speed). Starts from a preset (default: 'default'); options override it. Writes "
        "results.json, leaderboard.txt and arena.png into --out."
    )
    what = parser.add_argument_group("what to run")
    choice = what.add_mutually_exclusive_group()
    choice.add_argument("--preset", default=None, help="a registered preset (see --list)")
    choice.add_argument("--quick", action="store_true", help="the 'quick' preset: a smoke test")
    choice.add_argument("--paper", action="store_true", help="the 'paper' preset (Zoology)")
    what.add_argument("--list", action="store_true", help="list tasks, presets, plugins; exit")
    what.add_argument("--dry-run", action="store_true", help="print the runs and their cost")
    what.add_argument(
        "--calibrate",
        action="store_true",
        help="with --dry-run: time a few steps of each model here and estimate the wall time",
    )

    models = parser.add_argument_group("models")
    models.add_argument("--patterns", nargs="+", metavar="PATTERN", default=None,
                        help="replace the preset's models: symbol strings ('XY', 'X Y Z'), "
                        "layer names, or NAME:N for a named pattern ('jamba_like:4')")  # fmt: skip
    models.add_argument("--models", nargs="+", metavar="LABEL", default=None,
                        help="only these of the preset's models")  # fmt: skip
    models.add_argument("--budget", type=POSITIVE_INT, default=None,
                        help="parameters per model (embedding included); default: the first "
                        "model's count at --hidden-size")  # fmt: skip
    models.add_argument("--hidden-size", type=POSITIVE_INT, default=None,
                        help="width of the first model, which sets the budget")  # fmt: skip
    models.add_argument(
        "--widths",
        nargs="+",
        type=POSITIVE_INT,
        default=None,
        help="train every model at each of these widths (no budget matching)",
    )
    models.add_argument("--no-match", action="store_true",
                        help="build every model at --hidden-size")  # fmt: skip
    models.add_argument("--untied", action="store_true", help="an untied head")
    models.add_argument(
        "--layer-option",
        action="append",
        type=parse_assignment,
        default=[],
        metavar="KEY=VALUE",
        help="a layer option for every model (repeatable)",
    )
    models.add_argument("--dropout", type=FRACTION, default=None, help="block dropout")

    task = parser.add_argument_group("task")
    task.add_argument("--task", default=None, help="a registered task (see --list)")
    task.add_argument("--seq-lens", nargs="+", type=POSITIVE_INT, default=None, metavar="L",
                      help="the lengths of every stage")  # fmt: skip
    for flag in ("vocab-size", "num-kv-pairs", "num-tokens"):
        task.add_argument(f"--{flag}", type=POSITIVE_INT, default=None, help="task parameter")
    task.add_argument("--power-a", type=POSITIVE, default=None, help="task parameter")
    task.add_argument(
        "--task-option",
        action="append",
        type=parse_assignment,
        default=[],
        metavar="KEY=VALUE",
        help="any task parameter (repeatable)",
    )

    train = parser.add_argument_group("training")
    train.add_argument("--lrs", nargs="+", type=POSITIVE, default=None,
                       help="learning rates of every stage that sweeps them (best per model "
                       "reported, every run stored)")  # fmt: skip
    train.add_argument("--lr", type=POSITIVE, default=None, help="one learning rate (= --lrs X)")
    train.add_argument(
        "--seeds",
        nargs="+",
        type=NON_NEGATIVE_INT,
        default=None,
        help="seeds of every stage (median, min-max and solved k/n reported)",
    )
    train.add_argument("--seed", type=NON_NEGATIVE_INT, default=None, help="= --seeds X")
    train.add_argument("--steps", type=POSITIVE_INT, default=None, help="max steps per run")
    train.add_argument("--epochs", type=POSITIVE_INT, default=None,
                       help="passes over --train-examples (sets the steps)")  # fmt: skip
    train.add_argument(
        "--train-examples",
        type=POSITIVE_INT,
        default=None,
        help="a fixed training set (default: fresh examples every step)",
    )
    train.add_argument("--batch-size", type=POSITIVE_INT, default=None, help="global batch")
    train.add_argument(
        "--pack",
        type=POSITIVE_INT,
        default=None,
        metavar="K",
        help="train on rows of K examples packed end to end, each its own document",
    )
    train.add_argument("--weight-decay", type=NON_NEGATIVE, default=None, help="AdamW")
    train.add_argument("--warmup", type=FRACTION, default=None, help="warmup fraction")
    train.add_argument("--eval-every", type=POSITIVE_INT, default=None, help="steps")
    train.add_argument("--eval-examples", type=POSITIVE_INT, default=None, help="held out")
    stop = train.add_mutually_exclusive_group()
    stop.add_argument(
        "--target-accuracy",
        type=TARGET,
        default=None,
        help="stop a run at this held-out accuracy, in (0, 1] (default 0.99)",
    )
    stop.add_argument("--no-early-stop", action="store_true", help="always run every step")
    train.add_argument("--checkpoint-every", type=POSITIVE_INT, default=None, help="steps")
    train.add_argument(
        "--chance-margin",
        type=FRACTION,
        default=0.05,
        help="rows within this of chance are 'not learned' (default 0.05)",
    )

    run = parser.add_argument_group("run")
    run.add_argument("--device", default="auto", help="auto (CUDA when available), cpu, cuda:N")
    run.add_argument("--dtype", choices=["float32", "float64", "bfloat16"], default=None,
                     help="bfloat16 = mixed precision (CUDA autocast)")  # fmt: skip
    run.add_argument("--out", default="arena-results", help="output folder")
    run.add_argument(
        "--resume",
        action="store_true",
        help="reuse finished runs, continue unfinished ones from their checkpoints",
    )
    run.add_argument("--jobs", type=POSITIVE_INT, default=None,
                     help="runs trained at once, one process each (default: one per CPU core "
                     "on CPU, 1 on CUDA or under torchrun)")  # fmt: skip
    run.add_argument(
        "--threads",
        type=NON_NEGATIVE_INT,
        default=1,
        help="CPU threads per run (default 1; 0 = torch's default)",
    )
    run.add_argument("--no-plot", action="store_true", help="skip the PNG plot")
    run.add_argument("--no-progress", action="store_true", help="no progress bar")


def _preset_name(args: argparse.Namespace) -> str:
    return "quick" if args.quick else "paper" if args.paper else args.preset or DEFAULT_PRESET


def _pattern_label(text: str) -> str:
    """``NAME:N`` (a named pattern) → its symbol string; anything else unchanged."""
    import hybridzoo
    from hybridzoo.errors import ConfigError

    name, sep, count = text.partition(":")
    if not sep:
        return text
    try:
        num_layers = int(count)
    except ValueError:
        raise ConfigError(f"pattern {text!r}: expected NAME:N with an integer N") from None
    return "".join(
        hybridzoo.get_layer(layer).symbol
        for layer in hybridzoo.expand_named_pattern(name, num_layers)
    )


def default_jobs(device: str, runs: int) -> int:
    """One run per usable CPU core on CPU; one on CUDA or under torchrun."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 or device.startswith("cuda"):
        return 1
    if device == "auto":
        import torch

        if torch.cuda.is_available():
            return 1
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, min(cores or 1, runs))


def run(args: argparse.Namespace) -> int:
    """Run the arena for parsed ``args``; print the leaderboard (rank 0). Returns the exit code."""
    import torch

    started = time.perf_counter()
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # deterministic cuBLAS
    previous = (
        torch.are_deterministic_algorithms_enabled(),
        torch.is_deterministic_algorithms_warn_only_enabled(),
        torch.get_num_threads(),
    )
    torch.use_deterministic_algorithms(True, warn_only=True)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    try:
        return _run(args, started)
    finally:
        torch.use_deterministic_algorithms(previous[0], warn_only=previous[1])
        torch.set_num_threads(previous[2])


def _run(args: argparse.Namespace, started: float) -> int:
    import hybridzoo
    from hybridzoo.arena.configure import build_config
    from hybridzoo.arena.distributed import init_distributed, shutdown_distributed
    from hybridzoo.arena.listing import describe_plan, format_listing, plugin_warnings
    from hybridzoo.arena.report import format_leaderboard
    from hybridzoo.arena.runner import RESULTS_FILE, run_arena

    if args.list:
        print(format_listing())
        return 0
    try:
        for line in plugin_warnings():
            print(line, file=sys.stderr)
        config = build_config(args, _preset_name(args), _pattern_label, default_jobs)
        if args.dry_run or args.calibrate:
            print(describe_plan(config, measure=args.calibrate))
            return 0
        context = init_distributed(args.device)
    except (ValueError, TypeError, hybridzoo.HybridZooError) as exc:
        print(f"hybridzoo arena: error: {exc}", file=sys.stderr)
        return 2
    try:
        if context.is_main:
            print(describe_plan(config, brief=True))
        payload = run_arena(
            config,
            context=context,
            resume=args.resume,
            progress=not args.no_progress,
            plot=not args.no_plot,
            threads=args.threads,
        )
        if context.is_main:
            print()
            print(format_leaderboard(payload))
            print()
            print(f"results: {config.out / RESULTS_FILE}")
            if payload.get("plot"):
                print(f"plot: {payload['plot']}")
            elif payload.get("plot_error"):
                print(f"plot: skipped: {payload['plot_error']}")
            print(f"wall time: {time.perf_counter() - started:.0f} s")
    except (ValueError, hybridzoo.HybridZooError) as exc:
        print(f"hybridzoo arena: error: {exc}", file=sys.stderr)
        return 2
    finally:
        shutdown_distributed(context)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m hybridzoo.arena.cli``: the arena without the core's CLI."""
    return run_alone("hybridzoo arena", configure_parser, run, argv)


if __name__ == "__main__":
    raise SystemExit(main())

"""``hybridzoo arena``: the command-line face of the arena.

The core's ``hybridzoo/cli/`` adds the ``arena`` subcommand with :func:`configure_parser` and
calls :func:`run` with the parsed arguments. Under ``torchrun`` every rank runs the same command;
rank 0 alone prints and writes files.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence
from typing import Any

from hybridzoo.arena.defaults import BUILTIN_TASKS, DEFAULT_HIDDEN_SIZE, DEFAULT_PATTERNS
from hybridzoo.cli.values import parse_assignment

DEFAULTS: dict[str, Any] = {
    "seq_lens": [64, 128],
    "steps": 600,
    "batch_size": 128,
    "eval_every": 50,
    "eval_examples": 1000,
    "checkpoint_every": 100,
}
"""The full run's defaults for the options that ``--quick`` changes."""

QUICK: dict[str, Any] = {
    "seq_lens": [64],
    "steps": 300,
    "batch_size": 64,
    "eval_every": 25,
    "eval_examples": 256,
    "checkpoint_every": 100,
}
"""What ``--quick`` sets (options given explicitly still win)."""


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def _non_negative(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {value}")
    return value


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Add every ``hybridzoo arena`` option to ``parser``."""
    parser.description = (
        "Train several layer patterns with matched parameter budgets on a synthetic recall task "
        "and print a leaderboard (accuracy, loss, parameters, state size, speed). Writes "
        "results.json, leaderboard.txt and arena.png into --out."
    )
    models = parser.add_argument_group("models")
    models.add_argument(
        "--patterns",
        nargs="+",
        metavar="PATTERN",
        default=None,
        help="patterns to compare: symbol strings ('MA', 'M A G'), layer names, or NAME:N for a "
        f"named pattern ('jamba_like:4'); default: {' '.join(DEFAULT_PATTERNS)}",
    )
    models.add_argument(
        "--budget",
        type=_positive,
        default=None,
        help="parameter budget per model (embedding included); each pattern's hidden size is "
        "chosen to match it; default: the first pattern's size at --hidden-size",
    )
    models.add_argument(
        "--hidden-size",
        type=_positive,
        default=DEFAULT_HIDDEN_SIZE,
        help="width of the first pattern, which sets the default budget "
        f"(default {DEFAULT_HIDDEN_SIZE})",
    )
    models.add_argument(
        "--no-match",
        action="store_true",
        help="build every pattern at --hidden-size instead of matching the budget",
    )
    models.add_argument(
        "--untied", action="store_true", help="give the head its own weights (default: tied)"
    )
    models.add_argument(
        "--layer-option",
        action="append",
        type=parse_assignment,
        default=[],
        metavar="KEY=VALUE",
        help="a layer option for every model, e.g. mamba_state_size=32 (repeatable)",
    )
    models.add_argument(
        "--dropout", type=float, default=0.0, help="dropout of every block (default 0)"
    )

    task = parser.add_argument_group("task")
    task.add_argument(
        "--task",
        default="mqar",
        help=f"a registered task: {', '.join(BUILTIN_TASKS)}, ... (default mqar)",
    )
    task.add_argument(
        "--seq-lens",
        nargs="+",
        type=_positive,
        default=None,
        metavar="L",
        help=f"sequence lengths (default {DEFAULTS['seq_lens']}, quick {QUICK['seq_lens']})",
    )
    task.add_argument(
        "--vocab-size", type=_positive, default=None, help="vocabulary (mqar 512, copying 16)"
    )
    task.add_argument(
        "--num-kv-pairs",
        type=_positive,
        default=None,
        help="mqar: key-value pairs per example (default seq_len // 16)",
    )
    task.add_argument(
        "--power-a", type=float, default=None, help="mqar: power-law exponent of the query gaps"
    )
    task.add_argument(
        "--num-tokens", type=_positive, default=None, help="selective_copying: tokens to copy"
    )
    task.add_argument(
        "--task-option",
        action="append",
        type=parse_assignment,
        default=[],
        metavar="KEY=VALUE",
        help="any other task parameter (repeatable), e.g. random_non_queries=False",
    )

    train = parser.add_argument_group("training")
    train.add_argument(
        "--steps", type=_positive, default=None, help="max steps per model (default 600)"
    )
    train.add_argument(
        "--batch-size", type=_positive, default=None, help="global batch size (default 128)"
    )
    train.add_argument("--lr", type=float, default=3e-3, help="peak AdamW learning rate")
    train.add_argument("--weight-decay", type=float, default=0.1, help="AdamW weight decay")
    train.add_argument(
        "--warmup", type=float, default=0.1, help="warmup fraction of the steps (default 0.1)"
    )
    train.add_argument(
        "--eval-every", type=_positive, default=None, help="steps between evaluations"
    )
    train.add_argument(
        "--eval-examples", type=_positive, default=None, help="held-out examples per length"
    )
    train.add_argument(
        "--target-accuracy",
        type=float,
        default=0.99,
        help="stop a model once its held-out accuracy reaches this (default 0.99; 2 = never)",
    )
    train.add_argument(
        "--checkpoint-every", type=_positive, default=None, help="steps between checkpoints"
    )
    train.add_argument("--seed", type=int, default=0, help="seed of data and weights")

    run = parser.add_argument_group("run")
    run.add_argument(
        "--device", default="auto", help="auto (CUDA when available), cpu, cuda or cuda:N"
    )
    run.add_argument(
        "--dtype",
        choices=["float32", "float64", "bfloat16"],
        default="float32",
        help="bfloat16 = mixed precision (CUDA autocast)",
    )
    run.add_argument("--out", default="arena-results", help="output folder")
    run.add_argument(
        "--resume",
        action="store_true",
        help="reuse finished runs and continue unfinished ones from their checkpoints in --out",
    )
    run.add_argument(
        "--quick",
        action="store_true",
        help=f"a short run (< 6 min on 2 CPU cores): {QUICK}",
    )
    run.add_argument(
        "--threads",
        type=_non_negative,
        default=1,
        help="CPU threads per process (default 1: the arena's models are small, and several "
        "threads only pay off on an otherwise idle machine; 0 = torch's default, one per core)",
    )
    run.add_argument("--no-plot", action="store_true", help="skip the PNG plot")
    run.add_argument("--no-progress", action="store_true", help="no progress bars")


def _choose(args: argparse.Namespace, name: str) -> Any:
    value = getattr(args, name)
    if value is not None:
        return value
    return (QUICK if args.quick else DEFAULTS)[name]


def _pattern_label(text: str) -> str:
    """``NAME:N`` (a named pattern) → its symbol string; anything else unchanged."""
    import hybridzoo

    name, sep, count = text.partition(":")
    if not sep:
        return text
    try:
        num_layers = int(count)
    except ValueError:
        raise ValueError(f"pattern {text!r}: expected NAME:N with an integer N") from None
    layers = hybridzoo.pattern(name, num_layers)
    return "".join(hybridzoo.get_layer(layer).symbol for layer in layers)


def build_config(args: argparse.Namespace) -> Any:
    """The :class:`~hybridzoo.arena.runner.ArenaConfig` of parsed ``args``."""
    from hybridzoo.arena.runner import ArenaConfig
    from hybridzoo.arena.train import TrainSettings

    task_params: dict[str, Any] = {}
    for flag, key in (
        ("vocab_size", "vocab_size"),
        ("num_kv_pairs", "num_kv_pairs"),
        ("power_a", "power_a"),
        ("num_tokens", "num_tokens"),
    ):
        if getattr(args, flag) is not None:
            task_params[key] = getattr(args, flag)
    task_params.update(dict(args.task_option))
    target = args.target_accuracy if args.target_accuracy <= 1 else None
    settings = TrainSettings(
        steps=_choose(args, "steps"),
        batch_size=_choose(args, "batch_size"),
        lr=args.lr,
        weight_decay=args.weight_decay,
        warmup_fraction=args.warmup,
        eval_every=_choose(args, "eval_every"),
        eval_examples=_choose(args, "eval_examples"),
        target_accuracy=target,
        checkpoint_every=_choose(args, "checkpoint_every"),
        seed=args.seed,
        dropout=args.dropout,
        dtype=args.dtype,
    )
    patterns = tuple(_pattern_label(p) for p in (args.patterns or DEFAULT_PATTERNS))
    return ArenaConfig(
        patterns=patterns,
        task=args.task,
        task_params=task_params,
        seq_lens=tuple(_choose(args, "seq_lens")),
        budget=args.budget,
        hidden_size=args.hidden_size,
        match_budget=not args.no_match,
        tie=not args.untied,
        layer_options=dict(args.layer_option),
        train=settings,
        out=args.out,
    )


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
    from hybridzoo.arena.distributed import init_distributed, shutdown_distributed
    from hybridzoo.arena.report import format_leaderboard
    from hybridzoo.arena.runner import plan_runs, run_arena

    try:
        config = build_config(args)
        specs, budget = plan_runs(config)
        context = init_distributed(args.device)
    except (ValueError, TypeError, hybridzoo.HybridZooError) as exc:
        print(f"hybridzoo arena: error: {exc}", file=sys.stderr)
        return 2
    try:
        if context.is_main:
            widths = {s.label: (s.hidden_size, s.param_count()) for s in specs}
            print(
                f"hybridzoo arena: {len(specs)} runs ({len(config.patterns)} patterns × "
                f"{len(config.seq_lens)} lengths), budget {budget:,} parameters, "
                f"{context.world_size} process(es) on {context.device}"
            )
            for label, (hidden, count) in widths.items():
                print(f"  {label:<12} hidden {hidden:>4}  {count:>10,} parameters")
        payload = run_arena(
            config,
            context=context,
            resume=args.resume,
            progress=not args.no_progress,
            plot=not args.no_plot,
        )
        if context.is_main:
            print()
            print(format_leaderboard(payload))
            print()
            print(f"results: {config.out / 'results.json'}")
            print(f"leaderboard: {config.out / 'leaderboard.txt'}")
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
    parser = argparse.ArgumentParser(prog="hybridzoo arena")
    configure_parser(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())

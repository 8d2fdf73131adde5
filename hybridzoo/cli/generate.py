"""``hybridzoo generate MODEL_DIR``: continue prompts (token ids) with a saved language model.

    hybridzoo generate runs/lm --prompt "3 1 4" --prompt 1,5 -n 32
    hybridzoo generate runs/lm --prompt-file prompts.txt -n 64 --sample --temperature 0.8 --seed 0

Prompts are token ids (separated by spaces or commas), one per ``--prompt`` or per line of
``--prompt-file`` (``-`` reads standard input); prompts of different lengths decode together,
each as it would alone (see :func:`hybridzoo.lm.generation.generate`). The output is one line
per prompt, its ids followed by the new ones (``--json``: a list of token lists). A progress bar
on standard error counts the new tokens (``--no-progress`` hides it).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from hybridzoo.cli.values import UsageError, parse_value

__all__ = ["configure_parser", "parse_prompt", "run"]

_DTYPES = ("float32", "float64", "bfloat16", "float16")


def parse_prompt(text: str, where: str = "--prompt") -> list[int]:
    """``"3 1 4"`` or ``"3,1,4"`` → ``[3, 1, 4]``; anything else is a :class:`UsageError`."""
    parts = text.replace(",", " ").split()
    if not parts or not all(p.lstrip("-").isdigit() for p in parts):
        raise UsageError(
            f"{where}: a prompt is token ids separated by spaces or commas, e.g. '3 1 4', got "
            f"{text!r:.60}"
        )
    return [int(p) for p in parts]


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Add the ``generate`` subcommand's arguments to ``parser``."""
    parser.add_argument("model_dir", metavar="MODEL_DIR", help="a directory saved by HybridLM.save")
    given = parser.add_argument_group("prompts (token ids; at least one)")
    given.add_argument(
        "-p", "--prompt", action="append", default=[], metavar="IDS", help="e.g. '3 1 4'"
    )
    given.add_argument(
        "--prompt-file", metavar="FILE", help="one prompt per line ('-': standard input)"
    )
    parser.add_argument(
        "-n", "--max-new-tokens", type=int, default=32, help="tokens to add (default 32)"
    )
    parser.add_argument(
        "--eos", action="append", type=int, default=[], metavar="ID", help="an id that ends a row"
    )
    sampling = parser.add_argument_group("sampling (default: greedy)")
    sampling.add_argument("--sample", action="store_true", help="sample instead of greedy")
    for flag, default, doc in (
        ("--temperature", 1.0, "divides the logits"),
        ("--top-k", None, "sample among the k most likely ids"),
        ("--top-p", None, "sample among the most likely ids reaching this probability"),
    ):
        sampling.add_argument(
            flag, type=parse_value, default=default, metavar="VALUE", help=f"{doc} (with --sample)"
        )
    sampling.add_argument("--seed", type=int, default=None, help="seed of the sampling")
    parser.add_argument("--device", default="cpu", help="where the model runs (default cpu)")
    parser.add_argument(
        "--dtype", default=None, help=f"the weights' dtype ({', '.join(_DTYPES)}; default: saved)"
    )
    parser.add_argument("--json", action="store_true", help="print a JSON list of token lists")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def _prompts(args: argparse.Namespace) -> list[list[int]]:
    prompts = [parse_prompt(text) for text in args.prompt]
    if args.prompt_file is not None:
        if args.prompt_file == "-":
            lines = sys.stdin.read().splitlines()
        else:
            path = Path(args.prompt_file)
            if not path.is_file():
                raise UsageError(f"--prompt-file {args.prompt_file}: no such file")
            lines = path.read_text().splitlines()
        where = f"--prompt-file {args.prompt_file}, line"
        prompts += [parse_prompt(t, f"{where} {n}") for n, t in enumerate(lines, 1) if t.strip()]
    if not prompts:
        raise UsageError("give at least one prompt: --prompt '3 1 4' or --prompt-file FILE")
    return prompts


def _load(args: argparse.Namespace) -> Any:
    import torch

    from hybridzoo.lm.model import HybridLM

    dtype = None
    if args.dtype is not None:
        if args.dtype not in _DTYPES:
            from hybridzoo.errors import did_you_mean

            raise UsageError(
                f"--dtype {args.dtype!r} is not one of {', '.join(_DTYPES)}."
                f"{did_you_mean(args.dtype, _DTYPES)}"
            )
        dtype = getattr(torch, args.dtype)
    try:
        device = torch.device(args.device)
    except RuntimeError:
        message = f"--device {args.device!r} is not a device (cpu, cuda, cuda:1, ...)"
        raise UsageError(message) from None
    return HybridLM.load(args.model_dir, device=device, dtype=dtype), device


def run(args: argparse.Namespace) -> int:
    """Load the model, decode the prompts, print the outputs."""
    import torch
    from tqdm.auto import tqdm

    from hybridzoo.lm.generation import collect, iter_generate

    prompts = _prompts(args)
    if args.seed is not None and not args.sample:
        raise UsageError("--seed sets the sampling's random draws: it needs --sample")
    lm, device = _load(args)
    generator = None
    if args.seed is not None:
        generator = torch.Generator(device=device).manual_seed(args.seed)
    steps = iter_generate(
        lm,
        prompts,
        args.max_new_tokens,
        do_sample=args.sample,
        temperature=args.temperature,
        top_k=args.top_k,
        top_p=args.top_p,
        eos_token_id=args.eos or None,
        generator=generator,
    )
    bar = tqdm(
        total=args.max_new_tokens * len(prompts),
        unit="tok",
        desc="generating",
        disable=args.no_progress,
        file=sys.stderr,
    )
    with bar:
        outputs = collect(prompts, _counted(steps, bar), args.max_new_tokens)
    if args.json:
        print(json.dumps(outputs))
    else:
        for output in outputs:
            print(" ".join(map(str, output)))
    return 0


def _counted(steps: Any, bar: Any) -> Any:
    for step in steps:
        bar.update(len(step.rows))
        yield step

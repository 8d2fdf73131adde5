"""``hybridzoo show PATTERN``: the picture of a pattern and its cost card, without building.

Per position: parameters (and those one token uses), forward FLOPs per token at ``--seq-len``,
step-state bytes and key/value-cache bytes per token in ``--dtype`` (see :func:`hybridzoo.cost`).
``--dialect megatron`` reads a Megatron pattern; ``--dialect transformers`` a ``layer_types``
JSON list (with ``--model-type``) or a transformers ``config.json`` file. A directory holding a
saved model (``model.save(directory)``; a converted checkpoint, for one) shows its own pattern
and options, and the layers' options records; for a language model also its embedding, learned
positions and head, and the whole model's parameters.
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path
from typing import Any

import attrs

from hybridzoo.cli.model_args import add_model_arguments, model_options
from hybridzoo.cli.values import UsageError

__all__ = ["configure_parser", "run"]


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Add the ``show`` subcommand's arguments to ``parser``."""
    parser.add_argument(
        "pattern",
        help='a pattern ("C C P", "(CP)*3", "C C{kernel_size=8}": symbols or names), a named '
        "one, or one in --dialect",
    )
    parser.add_argument(
        "-n", "--num-layers", type=int, default=None, help="layers, for a named pattern"
    )
    parser.add_argument(
        "--seq-len", type=int, default=2048, help="sequence length of the FLOPs (2048)"
    )
    parser.add_argument("--dtype", default="float32", help="dtype of the state bytes (float32)")
    parser.add_argument(
        "--dialect",
        default="native",
        choices=("native", "megatron", "transformers"),
        help="the pattern's notation (native)",
    )
    parser.add_argument("--model-type", default=None, help="transformers model_type")
    add_model_arguments(parser)
    parser.add_argument("--json", action="store_true", help="machine-readable output")


def _pattern(args: argparse.Namespace) -> Any:
    from hybridzoo.dialects import parse_pattern
    from hybridzoo.named_patterns import expand_named_pattern
    from hybridzoo.patterns import named_patterns

    spec: Any = args.pattern
    if args.dialect == "native" and Path(spec).is_dir():
        from hybridzoo.checkpoint import read_config

        if model_options(args):
            raise UsageError(f"{spec} holds a saved model: its config sets every option")
        return read_config(spec)
    if args.dialect == "native" and spec in named_patterns():
        if args.num_layers is None:
            raise UsageError(f"{spec!r} is a named pattern: give --num-layers N")
        return expand_named_pattern(spec, args.num_layers)
    if args.dialect == "transformers":
        path = Path(spec)
        try:
            spec = json.loads(path.read_text() if path.is_file() else spec)
        except (OSError, json.JSONDecodeError) as exc:
            raise UsageError(
                f"--dialect transformers takes a JSON list of layer types or a config.json "
                f"file, got {args.pattern!r:.80}: {exc}"
            ) from None
    if args.dialect == "native" and args.model_type is None:
        return spec
    return parse_pattern(spec, args.dialect, model_type=args.model_type)


def _language_model(config: Any) -> dict[str, Any] | None:
    """A saved language model's own parameters (the backbone's are the table's), or None."""
    from hybridzoo.lm.config import LMConfig

    if not isinstance(config, LMConfig):
        return None
    return {
        "vocab_size": config.vocab_size,
        "tie_embeddings": config.tie_embeddings,
        "max_positions": config.max_positions,
        **config.embedding_param_counts(),
        "total": config.param_count(),
    }


def _si(value: float | None) -> str:
    if value is None:
        return "unknown"
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(value) >= scale:
            return f"{value / scale:.3g} {unit}"
    return f"{value:.3g}"


def _count(value: int | None) -> str:
    return "grows" if value is None else f"{value:,}"


def run(args: argparse.Namespace) -> int:
    """Print the pattern and its cost card (a table, or JSON with ``--json``)."""
    from hybridzoo.config import HybridConfig
    from hybridzoo.cost import cost
    from hybridzoo.counting import param_breakdown, state_numel
    from hybridzoo.errors import DialectWarning
    from hybridzoo.patterns import visualize

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", DialectWarning)
        pattern = _pattern(args)
    for warning in caught:
        print(f"hybridzoo show: note: {warning.message}", file=sys.stderr)
    lm = _language_model(pattern)
    pattern = getattr(pattern, "backbone", pattern)
    options = model_options(args)
    card = cost(pattern, seq_len=args.seq_len, dtype=args.dtype, **options)
    if args.json:
        rows = param_breakdown(pattern, **options)
        state = state_numel(pattern, **options)
        data = {"rows": [attrs.asdict(r) for r in rows], "total": card.params}
        data |= {"state_numel": state, "state_size": state}  # state_size: deprecated key
        data |= {"language_model": lm} if lm else {}
        print(json.dumps({**data, "cost": card.to_dict()}, indent=2, default=str))
        return 0
    if isinstance(pattern, HybridConfig):  # a saved model's
        print(visualize(list(pattern.pattern), shared_layers=dict(pattern.shared_layers) or None))
        for name in dict.fromkeys(pattern.pattern):
            print(f"  {name}: {pattern.options_of(name)!r}")
    else:
        print(visualize(pattern, shared_layers=options.get("shared_layers")))
    if getattr(pattern, "boundaries", ()):
        print(f"Pipeline stages end after positions {', '.join(map(str, pattern.boundaries))}")
    print()
    head = f"{'pos':>6}  {'sym':3}  {'layer':14}  {'parameters':>12}  {'active':>12}"
    print(f"{head}  {'FLOPs/token':>12}  {'state bytes':>12}  {'KV B/token':>10}")
    for r in card.rows:
        pos = str(r.position) if r.position is not None else ("shared" if r.shared else "")
        flops = _si(r.flops_per_token)
        print(
            f"{pos:>6}  {r.symbol:3}  {r.layer:14}  {r.params:>12,}  {r.active_params:>12,}  "
            f"{flops:>12}  {_count(r.state_bytes):>12}  {r.kv_bytes_per_token:>10,}"
        )
    print(
        f"{'':>6}  {'':3}  {'total':14}  {card.params:>12,}  {card.active_params:>12,}  "
        f"{_si(card.flops_per_token):>12}  {_count(card.state_bytes):>12}  "
        f"{card.kv_bytes_per_token:>10,}"
    )
    print()
    if lm:
        positions = f"learned positions (max_positions={lm['max_positions']}) {lm['positions']:,}, "
        print(
            f"language model: vocab_size {lm['vocab_size']:,}, embedding {lm['embedding']:,}, "
            f"{positions if lm['max_positions'] else ''}head {lm['head']:,}"
            f"{' (tied: the embedding)' if lm['tie_embeddings'] else ''}; "
            f"{lm['total']:,} parameters in all"
        )
    if card.flops_per_token is not None:
        print(
            f"forward FLOPs per token at seq_len {card.seq_len}: {_si(card.flops_per_token)} "
            f"(weight products {_si(card.matmul_flops_per_token)}, mixers "
            f"{_si(card.mixer_flops_per_token)}); training (3x): "
            f"{_si(card.train_flops_per_token)}"
        )
    else:
        print(f"FLOPs unknown: no formula for {', '.join(card.unknown)}")
    if card.state_bytes is not None:
        print(
            f"step-mode state per sequence ({card.dtype}): {card.state_bytes:,} bytes after "
            f"{card.seq_len} tokens; key/value caches: {card.kv_bytes_per_token:,} bytes per "
            f"cached token"
        )
    else:
        print("step-mode state: unknown (a layer declares no state formula)")
    return 0

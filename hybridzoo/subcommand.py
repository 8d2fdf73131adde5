"""Running the module behind one ``hybridzoo`` subcommand on its own (``python -m ...``)."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence

__all__ = ["run_alone"]


def run_alone(
    prog: str,
    configure_parser: Callable[[argparse.ArgumentParser], None],
    run: Callable[[argparse.Namespace], int],
    argv: Sequence[str] | None = None,
) -> int:
    """Parse ``argv`` (default: ``sys.argv[1:]``) with a parser named ``prog`` that
    ``configure_parser`` fills, and return ``run`` of the result: the subcommand as the
    ``hybridzoo`` command runs it, without that command's own options (``--import``)."""
    parser = argparse.ArgumentParser(prog=prog)
    configure_parser(parser)
    return run(parser.parse_args(argv))

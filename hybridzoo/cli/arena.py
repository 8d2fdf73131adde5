"""``hybridzoo arena``: train and compare patterns on recall tasks.

Implemented in :mod:`hybridzoo.arena.cli`; this module is its place in the command line.
"""

from hybridzoo.arena.cli import configure_parser, run

__all__ = ["configure_parser", "run"]

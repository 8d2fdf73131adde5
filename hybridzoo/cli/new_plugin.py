"""``hybridzoo new-plugin``: scaffold a new plugin distribution.

Implemented in :mod:`hybridzoo.scaffold`; this module is its place in the command line.
"""

from hybridzoo.scaffold import configure_parser, run

__all__ = ["configure_parser", "run"]

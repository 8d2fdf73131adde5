"""``hybridzoo plugins``: list installed plugins, their distributions and status.

Implemented in :mod:`hybridzoo.plugins_report`; this module is its place in the command line.
"""

from hybridzoo.plugins_report import configure_parser, run

__all__ = ["configure_parser", "run"]

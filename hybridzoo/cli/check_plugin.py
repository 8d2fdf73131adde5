"""``hybridzoo check-plugin``: run the conformance kit on a registered layer.

Implemented in :mod:`hybridzoo.testing.report`; this module is its place in the command line.
"""

from hybridzoo.testing.report import configure_parser, run

__all__ = ["configure_parser", "run"]

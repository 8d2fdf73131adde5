"""The contract families, one module each (named as the family); importing this package registers
every check in :data:`hybridzoo.testing.CHECKS`, family by family in the order of
:data:`hybridzoo.testing.catalog.CONTRACTS`."""

from __future__ import annotations

import importlib

from hybridzoo.testing.catalog import CONTRACTS

# pytest hides the kit's own frames from tracebacks: the author sees the failure first
__tracebackhide__ = True

for _family in CONTRACTS:
    importlib.import_module(f"{__name__}.{_family}")

"""The catalog of checks: :class:`Check`, :data:`CHECKS` and the contract families.

Each contract family is one module of :mod:`hybridzoo.testing.contracts`; a check registers
itself with :func:`register` when its module is imported, and :mod:`hybridzoo.testing.checks`
imports them all, in the order of :data:`CONTRACTS` (cheap declaration checks first). The list of
contracts, with what each check proves, is ``docs/conformance.md``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import attrs

from hybridzoo.errors import close_matches
from hybridzoo.testing.case import LayerCase, one_thread
from hybridzoo.testing.results import CheckFailure

__all__ = ["CHECKS", "CONTRACTS", "Check", "register", "select"]

# pytest hides the kit's own frames from tracebacks: the author sees the failure first
__tracebackhide__ = True

#: The contract families, in the order their checks run: name -> what a layer promises.
CONTRACTS: dict[str, str] = {
    "declaration": "the spec and its options keep the plugin contract",
    "shapes": "[B, L, H] -> [B, L, H] for any B and L; dtype and device kept; works in a model",
    "counting": "param_count and state_size are exact closed formulas",
    "causality": "no output depends on a later input, non-finite inputs included",
    "packing": "a packed forward equals the separate forwards of its documents",
    "step_mode": "stepping and prefilling, in any chunks, equal the parallel forward",
    "state_ops": "a step state is rolled back by a snapshot, batched by rows, and refused by "
    "a model of another structure",
    "purity": "forward is a function of each row alone: rows independent, eval deterministic",
    "gradients": "gradients reach every parameter",
    "reference": "the fast path equals the slow time-step reference",
    "config": "the options survive the config's JSON round trip",
}


@attrs.frozen
class Check:
    """One named contract check.

    Attributes:
        name: the check's name (``"step_equals_parallel"``).
        function: ``(case: LayerCase) -> None``; raises :class:`CheckFailure` or
            :class:`CheckSkipped`, and may issue :class:`ConformanceWarning`.
        contract: the family of :data:`CONTRACTS` it belongs to (``"step_mode"``).
        doc: what a pass proves (the function's docstring).
    """

    name: str
    function: Callable[[LayerCase], None]
    contract: str
    doc: str

    def __call__(self, case: LayerCase) -> None:
        try:
            with one_thread(case.device):
                self.function(case)
        except CheckFailure as exc:
            if exc.check is None:
                exc.check = self.name
            raise

    @property
    def summary(self) -> str:
        """The first line of :attr:`doc`."""
        return self.doc.strip().splitlines()[0] if self.doc.strip() else ""


#: Every check by name, in the order they run (cheap declaration checks first).
CHECKS: dict[str, Check] = {}


def register(
    name: str, contract: str
) -> Callable[[Callable[[LayerCase], None]], Callable[[LayerCase], None]]:
    """Decorator: add the function to :data:`CHECKS` as the check ``name`` of ``contract``."""
    if contract not in CONTRACTS:
        raise ValueError(f"unknown contract family {contract!r}; families: {', '.join(CONTRACTS)}")

    def decorate(function: Callable[[LayerCase], None]) -> Callable[[LayerCase], None]:
        CHECKS[name] = Check(name, function, contract, " ".join((function.__doc__ or "").split()))
        return function

    return decorate


def select(checks: Iterable[str] | str | None) -> list[Check]:
    """The checks named (default: all), in the order given; an unknown name is a ``ValueError``
    with the close matches."""
    if checks is None:
        return list(CHECKS.values())
    if isinstance(checks, str):
        checks = [checks]
    selected = []
    for name in checks:
        if name not in CHECKS:
            hint = close_matches(str(name), CHECKS)
            tip = f" Did you mean {' or '.join(map(repr, hint))}?" if hint else ""
            raise ValueError(f"unknown check {name!r}.{tip} Checks: {', '.join(CHECKS)}")
        selected.append(CHECKS[name])
    return selected

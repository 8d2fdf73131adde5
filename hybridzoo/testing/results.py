"""The kit's outcomes: :class:`CheckFailure`, :class:`CheckSkipped`, :class:`CheckResult` and
:class:`ConformanceWarning`.

Torch-free, so that the pytest plugin and ``hybridzoo check-plugin --help`` load without torch.
"""

from __future__ import annotations

from typing import Any, Literal

import attrs

__all__ = ["CheckFailure", "CheckResult", "CheckSkipped", "ConformanceWarning", "Status"]

# pytest hides the kit's own frames from tracebacks: the author sees the failure first
__tracebackhide__ = True

Status = Literal["passed", "failed", "skipped"]


class CheckFailure(AssertionError):
    """A layer broke a contract; the message says which, where and by how much.

    It is an ``AssertionError`` so that pytest reports it as a test failure.

    Attributes:
        check: the name of the check that failed (set by the check's wrapper).
    """

    def __init__(self, message: str, *, check: str | None = None) -> None:
        super().__init__(message)
        self.check = check


class CheckSkipped(Exception):
    """A check does not apply to a layer (e.g. step checks on a non-stateful layer).

    Attributes:
        reason: why it does not apply, shown by pytest and ``hybridzoo check-plugin``.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class ConformanceWarning(UserWarning):
    """Something a check noticed that does not break a contract (an option declared without a
    ``doc``, ...). :func:`~hybridzoo.testing.run_checks` collects these into
    :attr:`CheckResult.warnings`; under pytest they are ordinary warnings (``-W error`` makes them
    errors). Added in plugin API version 2."""


@attrs.frozen
class CheckResult:
    """The outcome of one check on one layer (no timings: results are reproducible).

    Attributes:
        layer: the layer's name.
        check: the check's name (a key of ``hybridzoo.testing.CHECKS``).
        status: ``"passed"``, ``"failed"`` or ``"skipped"``.
        reason: why it failed or was skipped (``None`` when it passed).
        warnings: what the check noticed without failing (:class:`ConformanceWarning` messages),
            in order; added in plugin API version 2.
    """

    layer: str
    check: str
    status: Status = attrs.field(validator=attrs.validators.in_(("passed", "failed", "skipped")))
    reason: str | None = None
    warnings: tuple[str, ...] = attrs.field(default=(), converter=tuple)

    @property
    def passed(self) -> bool:
        return self.status == "passed"

    @property
    def failed(self) -> bool:
        return self.status == "failed"

    @property
    def skipped(self) -> bool:
        return self.status == "skipped"

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (``hybridzoo check-plugin --json``); ``warnings`` is a list."""
        data = attrs.asdict(self)
        data["warnings"] = list(self.warnings)
        return data

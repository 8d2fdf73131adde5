"""The kit's outcomes: :class:`CheckFailure`, :class:`CheckSkipped` and :class:`CheckResult`.

Torch-free, so that the pytest plugin and ``hybridzoo check-plugin --help`` load without torch.
"""

from __future__ import annotations

from typing import Any, Literal

import attrs

__all__ = ["CheckFailure", "CheckResult", "CheckSkipped", "Status"]

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


@attrs.frozen
class CheckResult:
    """The outcome of one check on one layer (no timings: results are reproducible).

    Attributes:
        layer: the layer's name.
        check: the check's name (a key of ``hybridzoo.testing.CHECKS``).
        status: ``"passed"``, ``"failed"`` or ``"skipped"``.
        reason: why it failed or was skipped (``None`` when it passed).
    """

    layer: str
    check: str
    status: Status = attrs.field(validator=attrs.validators.in_(("passed", "failed", "skipped")))
    reason: str | None = None

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
        """A JSON-ready dict (``hybridzoo check-plugin --json``)."""
        return attrs.asdict(self)

"""Value checks, torch-free: one vocabulary for options records, module constructors, the arena
and the conformance kit.

Each validator is a small, reprable object that serves two uses:

- as an ``attrs`` validator (``validator=at_least(1)`` in :func:`hybridzoo.plugin.option`), it
  raises ``TypeError``/``ValueError`` with a message such as ``"must be an integer >= 1, got 0"``;
- called directly, ``at_least(1).check("num_heads", value)`` returns the value (a numpy scalar
  becomes the Python number) or raises with the name in front: ``"num_heads must be an integer
  >= 1, got 0"``. Module constructors use this form for their one cheap check per invariant.

``a | b`` accepts what either accepts (``one_of("auto") | at_least(1)``).

Numbers: ``bool`` is never a number here; numpy integer and floating scalars are accepted wherever
Python ``int`` and ``float`` are (:func:`plain` turns them into Python numbers).

    >>> at_least(1)
    at_least(1)
    >>> at_least(2, multiple_of=2).check("head_dim", 8)
    8
"""

from __future__ import annotations

import math
import numbers
from typing import Any

__all__ = [
    "AnyOf",
    "Validator",
    "at_least",
    "boolean",
    "in_range",
    "is_integer",
    "is_real",
    "one_of",
    "plain",
    "positive",
    "power_of_two",
]


def is_integer(value: Any) -> bool:
    """An integer (Python or numpy), not a bool."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def is_real(value: Any) -> bool:
    """A real number (Python or numpy, integers included), not a bool."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def plain(value: Any) -> Any:
    """A numpy scalar as the Python number it holds; anything else unchanged.

    Used as the converter of every option, so that records, configs and JSON hold plain values.
    """
    if _is_numpy_scalar(value):
        return value.item()
    return value


def _is_numpy_scalar(value: Any) -> bool:
    return type(value).__module__ == "numpy" and getattr(value, "ndim", None) == 0


class Validator:
    """Base class: subclasses set :attr:`expected` and implement :meth:`_ok` (and may override
    :meth:`_type_ok` to tell a wrong type, ``TypeError``, from a wrong value, ``ValueError``)."""

    #: What a valid value is, as a phrase: ``"an integer >= 1"``.
    expected: str = "valid"

    def _type_ok(self, value: Any) -> bool:
        return True

    def _ok(self, value: Any) -> bool:
        raise NotImplementedError

    def problem(self, value: Any) -> Exception | None:
        """The exception ``value`` deserves (unraised), or ``None`` when it is valid."""
        if not self._type_ok(value):
            kind = type(value).__name__
            return TypeError(f"must be {self.expected}, got {value!r} ({kind})")
        if not self._ok(value):
            return ValueError(f"must be {self.expected}, got {value!r}")
        return None

    def __call__(self, _instance: Any, attribute: Any, value: Any) -> None:
        """The ``attrs`` validator protocol."""
        exc = self.problem(value)
        if exc is not None:
            raise exc

    def check(self, name: str, value: Any) -> Any:
        """``value`` (numpy scalars as Python numbers) if valid, else ``TypeError``/``ValueError``
        whose message starts with ``name``."""
        exc = self.problem(value)
        if exc is not None:
            raise type(exc)(f"{name} {exc}")
        return plain(value)

    def __or__(self, other: Validator) -> AnyOf:
        return AnyOf(self, other)


class AnyOf(Validator):
    """Valid when one of ``validators`` accepts the value (``a | b``); a ``ValueError`` when one
    of them accepts its type, else a ``TypeError``."""

    def __init__(self, *validators: Validator) -> None:
        self.validators = validators
        self.expected = " or ".join(v.expected for v in validators)

    def problem(self, value: Any) -> Exception | None:
        problems = [v.problem(value) for v in self.validators]
        if any(p is None for p in problems):
            return None
        kind = TypeError if all(isinstance(p, TypeError) for p in problems) else ValueError
        suffix = f" ({type(value).__name__})" if kind is TypeError else ""
        return kind(f"must be {self.expected}, got {value!r}{suffix}")

    def __repr__(self) -> str:
        return " | ".join(map(repr, self.validators))


class at_least(Validator):  # lower-case: used like a function, as attrs validators are
    """An integer ``>= minimum`` (and a multiple of ``multiple_of``), or ``None`` if allowed."""

    def __init__(self, minimum: int, *, multiple_of: int = 1, allow_none: bool = False) -> None:
        self.minimum, self.multiple_of, self.allow_none = minimum, multiple_of, allow_none
        self.expected = f"an integer >= {minimum}"
        if multiple_of > 1:
            self.expected += f" and a multiple of {multiple_of}"
        if allow_none:
            self.expected += " or None"

    def _type_ok(self, value: Any) -> bool:
        return is_integer(value) or (value is None and self.allow_none)

    def _ok(self, value: Any) -> bool:
        return value is None or (value >= self.minimum and value % self.multiple_of == 0)

    def __repr__(self) -> str:
        extra = f", multiple_of={self.multiple_of}" if self.multiple_of > 1 else ""
        extra += ", allow_none=True" if self.allow_none else ""
        return f"at_least({self.minimum}{extra})"


class _PowerOfTwo(Validator):
    """An integer power of two: 1, 2, 4, ..."""

    expected = "a power of two (1, 2, 4, ...)"

    def _type_ok(self, value: Any) -> bool:
        return is_integer(value)

    def _ok(self, value: Any) -> bool:
        return value >= 1 and not value & (value - 1)

    def __repr__(self) -> str:
        return "power_of_two"


class _Boolean(Validator):
    """``True`` or ``False`` (not 0/1, not a string)."""

    expected = "True or False"

    def _type_ok(self, value: Any) -> bool:
        return isinstance(value, bool) or (
            _is_numpy_scalar(value) and isinstance(value.item(), bool)
        )

    def _ok(self, value: Any) -> bool:
        return True

    def __repr__(self) -> str:
        return "boolean"


#: Validator: an integer power of two (1, 2, 4, ...).
power_of_two = _PowerOfTwo()
#: Validator: ``True`` or ``False``.
boolean = _Boolean()


class in_range(Validator):
    """A real number in ``[low, high]`` (either end open as asked; NaN never), or ``None``."""

    def __init__(
        self,
        low: float = -math.inf,
        high: float = math.inf,
        *,
        low_open: bool = False,
        high_open: bool = False,
        allow_none: bool = False,
    ) -> None:
        self.low, self.high = low, high
        self.low_open, self.high_open, self.allow_none = low_open, high_open, allow_none
        left, right = ("(" if low_open else "["), (")" if high_open else "]")
        self.expected = f"a number in {left}{low:g}, {high:g}{right}"
        if allow_none:
            self.expected += " or None"

    def _type_ok(self, value: Any) -> bool:
        return is_real(value) or (value is None and self.allow_none)

    def _ok(self, value: Any) -> bool:
        if value is None:
            return True
        if math.isnan(value):
            return False
        above = value > self.low if self.low_open else value >= self.low
        below = value < self.high if self.high_open else value <= self.high
        return above and below

    def __repr__(self) -> str:
        args = [repr(self.low), repr(self.high)]
        args += [f"{k}=True" for k in ("low_open", "high_open", "allow_none") if getattr(self, k)]
        return f"in_range({', '.join(args)})"


#: Validator: a finite real number ``> 0``.
positive = in_range(0.0, math.inf, low_open=True, high_open=True)


class one_of(Validator):
    """One of the given values (compared with ``==``; a close match is suggested for strings)."""

    def __init__(self, *values: Any) -> None:
        if not values:
            raise ValueError("one_of needs at least one value")
        self.values = values
        self.expected = "one of " + ", ".join(map(repr, values))

    def _ok(self, value: Any) -> bool:
        value = plain(value)
        return any(value == v and type(value) is type(v) for v in self.values)

    def problem(self, value: Any) -> Exception | None:
        exc = super().problem(value)
        if exc is not None and isinstance(value, str):
            from hybridzoo.errors import did_you_mean

            words = [v for v in self.values if isinstance(v, str)]
            exc = ValueError(f"{exc}.{did_you_mean(value, words)}".rstrip("."))
        return exc

    def __repr__(self) -> str:
        return f"one_of({', '.join(map(repr, self.values))})"

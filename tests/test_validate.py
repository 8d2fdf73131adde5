"""The torch-free value checks: messages name the value and what is valid; numpy scalars pass."""

from __future__ import annotations

import math

import attrs
import numpy as np
import pytest

from hybridzoo.validate import at_least, boolean, in_range, one_of, plain, positive, power_of_two


@pytest.mark.parametrize(
    ("validator", "value", "error", "message"),
    [
        (at_least(1), 0, ValueError, "must be an integer >= 1, got 0"),
        (at_least(1), True, TypeError, "got True (bool)"),
        (at_least(1), 2.0, TypeError, "got 2.0 (float)"),
        (at_least(2, multiple_of=2), 3, ValueError, "a multiple of 2, got 3"),
        (power_of_two, 12, ValueError, "power of two"),
        (power_of_two, 0, ValueError, "power of two"),
        (boolean, 1, TypeError, "True or False, got 1"),
        (boolean, "true", TypeError, "True or False"),
        (positive, 0.0, ValueError, "(0, inf)"),
        (positive, math.inf, ValueError, "got inf"),
        (positive, math.nan, ValueError, "got nan"),
        (in_range(0, 1, high_open=True), 1.0, ValueError, "[0, 1)"),
        (one_of("gelu", "relu2"), "gelo", ValueError, "Did you mean 'gelu'?"),
        (one_of("gelu", "relu2"), 3, ValueError, "one of 'gelu', 'relu2', got 3"),
        (one_of("auto") | at_least(1), 0, ValueError, "one of 'auto' or an integer >= 1, got 0"),
        (one_of("auto") | at_least(1), "big", ValueError, "got 'big'"),
        (at_least(1) | boolean, 1.5, TypeError, "or True or False, got 1.5 (float)"),
    ],
)
def test_bad_values_say_what_is_valid(validator, value, error, message) -> None:
    with pytest.raises(error, match="^must be") as exc:
        validator(None, None, value)
    assert message in str(exc.value)
    with pytest.raises(error, match="^num_heads must be"):
        validator.check("num_heads", value)


@pytest.mark.parametrize(
    ("validator", "value", "expected"),
    [
        (at_least(1), np.int64(3), 3),
        (at_least(1, allow_none=True), None, None),
        (power_of_two, np.int32(8), 8),
        (boolean, np.bool_(True), True),
        (positive, np.float32(0.5), 0.5),
        (in_range(-1, 1), np.int16(0), 0),
        (one_of(None, "sinusoidal"), None, None),
        (one_of("auto") | at_least(1), np.int8(3), 3),
        (one_of("auto") | at_least(1), "auto", "auto"),
    ],
)
def test_numpy_scalars_are_plain_numbers(validator, value, expected) -> None:
    checked = validator.check("x", value)
    assert checked == expected and type(checked) is type(expected)
    assert type(plain(value)) is type(expected)


def test_validators_are_reprable_attrs_validators() -> None:
    @attrs.frozen
    class Options:
        heads: int = attrs.field(default=4, validator=at_least(1))
        flag: bool = attrs.field(default=True, validator=boolean)

    assert repr(at_least(2, multiple_of=2)) == "at_least(2, multiple_of=2)"
    assert repr(boolean) == "boolean" and repr(power_of_two) == "power_of_two"
    assert repr(one_of("auto") | at_least(1)) == "one_of('auto') | at_least(1)"
    with pytest.raises(ValueError, match="got 0"):
        Options(heads=0)
    with pytest.raises(TypeError, match="True or False"):
        Options(flag="yes")

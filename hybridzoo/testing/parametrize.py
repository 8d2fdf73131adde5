"""``parametrize_with_checks``: one pytest test per (layer, check), like scikit-learn's helper.

    from hybridzoo.testing import parametrize_with_checks

    @parametrize_with_checks("mylayer")
    def test_mylayer(check):
        check()

Test ids are ``<layer>-<check>`` (``mylayer-step_equals_parallel``); a check that does not apply
is reported as a pytest skip with its reason. It needs no pytest plugin (the fixtures of
:mod:`hybridzoo.testing.pytest_plugin` are optional).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import attrs
import pytest

from hybridzoo.testing.results import CheckSkipped

if TYPE_CHECKING:  # pragma: no cover
    from hybridzoo.spec import LayerSpec

__all__ = ["BoundCheck", "parametrize_with_checks"]


@attrs.frozen
class BoundCheck:
    """One check bound to one layer: call it to run the check (a pytest skip when it does not
    apply). The layer, if given by name, is looked up in the default registry when called.

    Attributes:
        layer: a :class:`hybridzoo.LayerSpec` or a layer name.
        check: the check's name (a key of :data:`hybridzoo.testing.CHECKS`).
        case: keyword arguments of :func:`hybridzoo.testing.layer_case` (options, hidden_size,
            batch, length, dtype, seed, device).
    """

    layer: Any
    check: str
    case: dict[str, Any] = attrs.field(factory=dict, eq=False)

    @property
    def id(self) -> str:
        """``<layer>-<check>``."""
        name = self.layer if isinstance(self.layer, str) else self.layer.name
        return f"{name}-{self.check}"

    def __call__(self) -> None:
        from hybridzoo.testing.checks import CHECKS, layer_case

        case = layer_case(self.layer, **self.case)
        try:
            CHECKS[self.check](case)
        except CheckSkipped as exc:
            pytest.skip(exc.reason)

    def __repr__(self) -> str:
        return f"<check {self.id}>"


def parametrize_with_checks(
    *specs_or_names: LayerSpec | str,
    checks: Iterable[str] | None = None,
    argname: str = "check",
    **case: Any,
) -> pytest.MarkDecorator:
    """Parametrize a test over every (layer, check) pair; the test receives a
    :class:`BoundCheck` and calls it.

    Args:
        *specs_or_names: layers, as :class:`hybridzoo.LayerSpec` objects or registered names
            (looked up when the test runs, in the default registry of that moment).
        checks: names of checks to run (default: every check of
            :data:`hybridzoo.testing.CHECKS`).
        argname: the test's argument (default ``"check"``).
        **case: keyword arguments of :func:`hybridzoo.testing.layer_case` (``options``,
            ``hidden_size``, ``batch``, ``length``, ``dtype``, ``seed``, ``device``).

    Raises:
        ValueError: no layer given, or an unknown check name (with close matches).
        TypeError: a layer that is neither a spec nor a name.
    """
    from hybridzoo.spec import LayerSpec
    from hybridzoo.testing.checks import _select

    if not specs_or_names:
        raise ValueError("parametrize_with_checks needs at least one layer (a spec or a name)")
    for layer in specs_or_names:
        if not isinstance(layer, LayerSpec | str):
            raise TypeError(
                f"parametrize_with_checks takes LayerSpec objects or layer names, got "
                f"{type(layer).__name__}: {layer!r:.80}"
            )
    names = [c.name for c in _select(checks)]
    params = [BoundCheck(layer, name, dict(case)) for layer in specs_or_names for name in names]
    return pytest.mark.parametrize(argname, params, ids=[p.id for p in params])

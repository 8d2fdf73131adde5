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

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

import attrs
import pytest

from hybridzoo.testing.results import CheckSkipped

if TYPE_CHECKING:  # pragma: no cover
    from hybridzoo.spec import LayerSpec

__all__ = ["BoundCheck", "parametrize_with_checks"]

# pytest hides the kit's own frames from tracebacks: the author sees the failure first
__tracebackhide__ = True


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


def _xfail_marks(
    xfail: Mapping[Any, str], layers: list[str], names: list[str]
) -> dict[tuple[str, str], pytest.MarkDecorator]:
    marks = {}
    for key, reason in xfail.items():
        layer, check = key if isinstance(key, tuple) else (None, key)
        if check not in names:
            raise ValueError(
                f"xfail names the check {check!r}, which is not parametrized here "
                f"(checks: {', '.join(names)})"
            )
        if layer is not None and layer not in layers:
            raise ValueError(
                f"xfail names the layer {layer!r}, which is not parametrized here "
                f"(layers: {', '.join(layers)})"
            )
        if not isinstance(reason, str) or not reason.strip():
            raise ValueError(f"xfail[{key!r}] must be a reason (a non-empty string)")
        for name in [layer] if layer is not None else layers:
            marks[(name, check)] = pytest.mark.xfail(strict=True, reason=reason)
    return marks


def parametrize_with_checks(
    *specs_or_names: LayerSpec | str,
    checks: Iterable[str] | None = None,
    argname: str = "check",
    xfail: Mapping[str | tuple[str, str], str] | None = None,
    **case: Any,
) -> pytest.MarkDecorator:
    """Parametrize a test over every (layer, check) pair; the test receives a
    :class:`BoundCheck` and calls it.

    Args:
        *specs_or_names: layers, as :class:`hybridzoo.LayerSpec` objects, factories decorated
            with :func:`hybridzoo.layer`, or registered names (looked up when the test runs, in
            the default registry of that moment).
        checks: names of checks to run (default: every check of
            :data:`hybridzoo.testing.CHECKS`).
        argname: the test's argument (default ``"check"``).
        xfail: known failures, ``{check: reason}`` or ``{(layer, check): reason}``: those tests
            are ``pytest.mark.xfail(strict=True)``, so that the fix turns them into failures to
            remove. A key that names no parametrized layer or check is a ``ValueError``. Added
            in plugin API version 2.
        **case: keyword arguments of :func:`hybridzoo.testing.layer_case` (``options``,
            ``hidden_size``, ``batch``, ``length``, ``dtype``, ``seed``, ``device``).

    Raises:
        ValueError: no layer given, an unknown check name (with close matches), a bad ``xfail``.
        TypeError: a layer that is neither a spec nor a name.
    """
    from hybridzoo.spec import LayerSpec
    from hybridzoo.testing.catalog import select
    from hybridzoo.testing.checks import CHECKS  # noqa: F401  (every check registered)

    if not specs_or_names:
        raise ValueError("parametrize_with_checks needs at least one layer (a spec or a name)")
    specs_or_names = tuple(
        layer.spec if isinstance(getattr(layer, "spec", None), LayerSpec) else layer
        for layer in specs_or_names
    )
    for layer in specs_or_names:
        if not isinstance(layer, LayerSpec | str):
            raise TypeError(
                f"parametrize_with_checks takes LayerSpec objects, layer names or factories "
                f"decorated with hybridzoo.layer, got {type(layer).__name__}: {layer!r:.80}"
            )
    names = [c.name for c in select(checks)]
    layers = [layer if isinstance(layer, str) else layer.name for layer in specs_or_names]
    marks = _xfail_marks(xfail or {}, layers, names)
    params = [
        pytest.param(
            bound := BoundCheck(layer, name, dict(case)),
            id=bound.id,
            marks=[marks[(layer_name, name)]] if (layer_name, name) in marks else [],
        )
        for layer, layer_name in zip(specs_or_names, layers, strict=True)
        for name in names
    ]
    return pytest.mark.parametrize(argname, params)

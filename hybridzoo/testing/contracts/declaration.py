"""Contract ``declaration``: the spec and its options keep the plugin contract."""

from __future__ import annotations

import warnings

import attrs

from hybridzoo.config import HybridConfig
from hybridzoo.errors import HybridZooError, OptionError
from hybridzoo.options import make_options
from hybridzoo.spec import validate_spec
from hybridzoo.testing.case import LayerCase, private_registry
from hybridzoo.testing.catalog import register
from hybridzoo.testing.results import CheckFailure, ConformanceWarning

# pytest hides the kit's own frames from tracebacks: the author sees the failure first
__tracebackhide__ = True


@register("spec_valid", "declaration")
def check_spec_valid(case: LayerCase) -> None:
    """The spec passes :func:`hybridzoo.spec.validate_spec` (names, symbol, an attrs options
    class whose defaults validate, callables, an API version this hybridzoo supports)."""
    try:
        validate_spec(case.spec)
    except HybridZooError as exc:
        raise CheckFailure(str(exc)) from exc


@register("options_documented", "declaration")
def check_options_documented(case: LayerCase) -> None:
    """Every ``examples`` value of an option validates (with the other fields at their
    defaults); an option without a ``doc`` or a validator (a plain ``attrs.field``) is a
    :class:`ConformanceWarning`, not a failure: declare it with ``hybridzoo.option(default,
    doc=..., validator=...)`` so that ``hybridzoo layers`` can explain it."""
    spec = case.spec
    problems: list[str] = []
    for field in attrs.fields(spec.options):
        user = f"{spec.option_prefix}_{field.name}"
        doc = field.metadata.get("doc")
        missing = []
        if not isinstance(doc, str) or not doc.strip():
            missing.append("no doc")
        if field.validator is None:
            missing.append("no validator")
        if missing:
            warnings.warn(
                ConformanceWarning(
                    f"layer {spec.name!r}: option {user} has {' and '.join(missing)} "
                    "(declare it with hybridzoo.option(default, doc=..., validator=...))"
                ),
                stacklevel=2,
            )
        for example in field.metadata.get("examples", ()):
            _, errors = make_options(spec, {field.name: example})
            if errors:
                problems.append(f"{user}: example {example!r} is invalid: {'; '.join(errors)}")
    if problems:
        raise CheckFailure(
            f"layer {spec.name!r} declares {len(problems)} invalid option example(s):\n  - "
            + "\n  - ".join(problems)
        )


@register("unknown_options_rejected", "declaration")
def check_unknown_options_rejected(case: LayerCase) -> None:
    """A misspelt option is an error, never ignored: the options record refuses an unknown
    keyword, and ``HybridConfig.create`` raises ``OptionError`` for ``<prefix>_<unknown>``."""
    spec = case.spec
    bogus = "no_such_option_zz"
    try:
        spec.options(**{bogus: 1})
    except TypeError:
        pass
    else:
        raise CheckFailure(
            f"{spec.options.__name__}({bogus}=1) was accepted: an options record must refuse "
            "unknown fields (use @attrs.frozen without **kwargs)"
        )
    registry = private_registry(spec)
    try:
        HybridConfig.create(
            [spec.name],
            hidden_size=case.hidden_size,
            registry=registry,
            **case.flat_options(),
            **{f"{spec.option_prefix}_{bogus}": 1},
        )
    except OptionError as exc:
        if bogus not in str(exc):
            raise CheckFailure(f"the OptionError does not name the unknown option: {exc}") from exc
    else:
        raise CheckFailure(f"the unknown option {spec.option_prefix}_{bogus}=1 was accepted")

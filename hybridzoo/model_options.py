"""``ModelOptions``: the model-level options of :func:`hybridzoo.build`, declared once.

Every model option is one field of :class:`ModelOptions` (default, doc, validator). From these
fields come the fields of :class:`hybridzoo.HybridConfig`, its ``to_dict``/``from_dict`` and
``replace``, the keywords :func:`hybridzoo.build` accepts (and the signature ``help(build)``
shows), and the ``hybridzoo`` command's model flags (``--hidden-size``, ``--norm``, ...).
Everything else a call takes is a layer option, ``<prefix>_<field>``.

No torch here: counting parameters and listing options stay cheap.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import attrs

from hybridzoo.formulas import layer_norm_param_count
from hybridzoo.patterns import SharedLayers
from hybridzoo.spec import option
from hybridzoo.validate import at_least, in_range, is_integer, one_of, plain, positive

__all__ = [
    "MODEL_OPTIONS",
    "NORMS",
    "ModelOptions",
    "SharedLayers",
    "check_model_options",
    "describe_model_options",
    "norm_param_count",
    "with_model_options",
]


#: The norms a model can use, with their parameter counts at width ``H`` (RMSNorm has no bias).
NORMS: dict[str, Callable[[int], int]] = {
    "layernorm": layer_norm_param_count,
    "rmsnorm": lambda size: size,
}


def norm_param_count(norm: str, hidden_size: int) -> int:
    """Parameters of one norm of kind ``norm`` (``"layernorm"``: ``2·H``, ``"rmsnorm"``: ``H``)."""
    return NORMS[norm](hidden_size)


def _freeze_shared(value: Any) -> Any:
    """``{"conv": [2, 4]}`` → ``(("conv", (2, 4)),)``; anything else is left for the validator."""
    if value is None:
        return ()
    if isinstance(value, Mapping):
        try:
            return tuple((k, tuple(plain(p) for p in v)) for k, v in value.items())
        except TypeError:  # positions that are not a list
            return value
    return value


def _validate_shared(_instance: Any, _attribute: Any, value: Any) -> None:
    """Structure only; :class:`~hybridzoo.HybridConfig` checks the names and the positions
    against the registry and the pattern (:func:`hybridzoo.patterns.resolve_shared_layers`)."""
    if not isinstance(value, tuple) or not all(
        isinstance(item, tuple)
        and len(item) == 2
        and isinstance(item[0], str)
        and isinstance(item[1], tuple)
        and all(is_integer(p) and p >= 1 for p in item[1])
        for item in value
    ):
        raise ValueError(f"must be a mapping {{layer: [1-based positions]}}, got {value!r}")


@attrs.frozen(kw_only=True)
class ModelOptions:
    """The model-level options of :func:`hybridzoo.build` (defaults as in Edifice).

    A :class:`~hybridzoo.HybridConfig` has each of these as a field (``config.hidden_size``);
    ``config.model_options`` gives them as this record.
    """

    embed_dim: int | None = option(
        None,
        doc="width of the input [B, L, embed_dim]; None: hidden_size (no input projection)",
        validator=attrs.validators.optional(at_least(1)),
    )
    hidden_size: int = option(256, doc="width of the residual stream", validator=at_least(1))
    dropout: float = option(
        0.1,
        doc="dropout probability on each block's output, before the residual add",
        validator=in_range(0.0, 1.0, high_open=True),
    )
    shared_layers: SharedLayers = attrs.field(
        default=(),
        converter=_freeze_shared,
        validator=_validate_shared,
        metadata={
            "doc": "{layer: [positions]}: one block of that layer, one set of weights, applied "
            "after each listed 1-based position (as Zamba shares one block)",
            "examples": (),
        },
    )
    output: str = option(
        "last",
        doc="'last': [B, hidden_size], the final norm at the last position; "
        "'sequence': [B, L, hidden_size]",
        validator=one_of("last", "sequence"),
    )
    positional_encoding: str | None = option(
        None,
        doc="None, or 'sinusoidal' (Vaswani's encoding, added after the input projection)",
        validator=one_of(None, "sinusoidal"),
    )
    norm: str = option(
        "layernorm",
        doc="the norm of every pre-norm block and of the final norm: 'layernorm' (weight and "
        "bias) or 'rmsnorm' (weight only)",
        validator=one_of(*NORMS),
    )
    norm_eps: float = option(
        1e-5, doc="epsilon of every norm (a finite number > 0)", validator=positive
    )


#: The names of the model options, in declaration order.
MODEL_OPTIONS: tuple[str, ...] = tuple(f.name for f in attrs.fields(ModelOptions))


def check_model_options(values: Mapping[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """Validate the model options but ``shared_layers`` (checked with the pattern and the
    registry by :class:`~hybridzoo.HybridConfig`); the missing ones take their defaults.

    Returns ``(values, problems)``: every value plain (numpy scalars as Python numbers, a float
    option as a float), and one message per bad value, e.g.
    ``"dropout must be a number in [0, 1), got 1.5"``. Unknown names are the caller's business.
    """
    out: dict[str, Any] = {}
    problems: list[str] = []
    for field in attrs.fields(ModelOptions):
        if field.name == "shared_layers":
            continue
        value = plain(values.get(field.name, field.default))
        try:
            field.validator(None, field, value)
        except (TypeError, ValueError) as exc:
            problems.append(f"{field.name} {exc}")
            continue
        out[field.name] = float(value) if isinstance(field.default, float) else value
    return out, problems


def describe_model_options(indent: str = "") -> str:
    """One line per model option, ``name (default default): doc``, for docstrings and help."""
    lines = []
    for field in attrs.fields(ModelOptions):
        default = dict(field.default) if field.name == "shared_layers" else field.default
        lines.append(f"{indent}{field.name} (default {default!r}): {field.metadata['doc']}.")
    return "\n".join(lines)


F = TypeVar("F", bound=Callable[..., Any])


def with_model_options(func: F) -> F:
    """Show the model options as keyword-only parameters in ``func``'s signature (``help()``,
    IDEs), before its ``**options``; the function itself still receives them in ``**options``,
    so that "given" means "passed", whatever the value."""
    signature = inspect.signature(func)
    params = list(signature.parameters.values())
    var = next(i for i, p in enumerate(params) if p.kind is inspect.Parameter.VAR_KEYWORD)
    added = [
        inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=f.default)
        for f in attrs.fields(ModelOptions)
        if f.name not in signature.parameters
    ]

    func.__signature__ = signature.replace(  # type: ignore[attr-defined]
        parameters=[*params[:var], *added, *params[var:]]
    )
    return func

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
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeAlias, TypeVar

import attrs

from hybridzoo.formulas import layer_norm_param_count
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
    "normalize_shared_layers",
    "with_model_options",
]

#: ``(("attention", (2, 4)), ...)``: a layer applied after these 1-based positions.
SharedLayers: TypeAlias = tuple[tuple[str, tuple[int, ...]], ...]

#: The norms a model can use, with their parameter counts at width ``H`` (RMSNorm has no bias).
NORMS: dict[str, Callable[[int], int]] = {
    "layernorm": layer_norm_param_count,
    "rmsnorm": lambda size: size,
}


def norm_param_count(norm: str, hidden_size: int) -> int:
    """Parameters of one norm of kind ``norm`` (``"layernorm"``: ``2·H``, ``"rmsnorm"``: ``H``)."""
    return NORMS[norm](hidden_size)


def _positions(value: Any) -> Any:
    value = plain(value)
    if type(value).__module__ == "numpy":  # an array of positions
        value = value.tolist()
    return [value] if is_integer(value) else value


def normalize_shared_layers(
    value: Any, num_layers: int | None = None
) -> tuple[SharedLayers, list[str]]:
    """``{"attention": [2, 4]}`` (or its frozen form) as ``(("attention", (2, 4)),)``.

    Returns ``(shared layers, problems)``; each problem names the bad value. With
    ``num_layers``, positions must lie in ``1..num_layers``. Layer names are checked against
    the registry by :class:`~hybridzoo.HybridConfig`, not here.
    """
    if value is None:
        return (), []
    if isinstance(value, Mapping):
        items = list(value.items())
    elif isinstance(value, tuple) and all(isinstance(i, tuple) and len(i) == 2 for i in value):
        items = list(value)  # the frozen form
    else:
        return (), [
            "shared_layers must be a mapping {layer: [positions]}, e.g. "
            f"{{'attention': [2, 4]}}; got {value!r}"
        ]
    out: list[tuple[str, tuple[int, ...]]] = []
    problems: list[str] = []
    for layer, raw in items:
        if not isinstance(layer, str):
            problems.append(
                f"shared_layers: the key {layer!r} ({type(layer).__name__}) must be a layer name "
                f"or symbol, e.g. {{'attention': {raw!r}}}"
            )
            continue
        positions = _positions(raw)
        if isinstance(positions, str) or not isinstance(positions, Sequence) or not positions:
            problems.append(
                f"shared_layers[{layer!r}] must be a non-empty list of 1-based positions, "
                f"got {raw!r}"
            )
            continue
        positions = [plain(p) for p in positions]
        top = num_layers if num_layers is not None else float("inf")
        bad = [p for p in positions if not is_integer(p) or not 1 <= p <= top]
        if bad:
            where = (
                f"the pattern has {num_layers} layers, so positions run 1..{num_layers}"
                if num_layers is not None
                else "positions are integers >= 1"
            )
            problems.append(f"shared_layers[{layer!r}]: positions {bad} are out of range; {where}")
            continue
        if len(set(positions)) != len(positions):
            problems.append(f"shared_layers[{layer!r}]: repeated positions {positions}")
            continue
        out.append((layer, tuple(sorted(positions))))
    return tuple(out), problems


def _convert_shared(value: Any) -> Any:
    shared, problems = normalize_shared_layers(value)
    return value if problems else shared


def _validate_shared(_instance: Any, _attribute: Any, value: Any) -> None:
    problems = normalize_shared_layers(value)[1]
    if problems:
        raise ValueError("; ".join(problems))


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
        converter=_convert_shared,
        validator=_validate_shared,
        metadata={
            "doc": "{layer: [positions]}: one block of that layer, one set of weights, applied "
            "after each listed 1-based position (Zamba's shared attention)",
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


def check_model_options(
    values: Mapping[str, Any], *, num_layers: int | None = None
) -> tuple[dict[str, Any], list[str]]:
    """Validate model options (the missing ones take their defaults).

    Returns ``(values, problems)``: every value plain (numpy scalars as Python numbers, a float
    option as a float, shared layers in their frozen form), and one message per bad value, e.g.
    ``"dropout must be a number in [0, 1), got 1.5"``. Unknown names are the caller's business.
    """
    out: dict[str, Any] = {}
    problems: list[str] = []
    for field in attrs.fields(ModelOptions):
        value = values.get(field.name, field.default)
        if field.name == "shared_layers":
            out[field.name], errs = normalize_shared_layers(value, num_layers)
            problems.extend(errs)
            continue
        value = plain(value)
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

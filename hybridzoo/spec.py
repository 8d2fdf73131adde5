"""What a plugin hands the registry: one :class:`LayerSpec` per layer type.

A spec is plain data and a few callables; importing it must not import torch, so that listing the
registered layers stays cheap (the factory imports the layer's module when called).

Example (a complete, minimal spec)::

    @attrs.frozen
    class ConvOptions:
        kernel_size: int = hybridzoo.option(
            4, doc="Causal kernel length.", validator=int_at_least(1)
        )

    spec = hybridzoo.LayerSpec(
        name="conv", symbol="C", option_prefix="conv", options=ConvOptions,
        factory=lambda o, h: CausalConv(h, o.kernel_size),
        param_count=lambda o, h: h * o.kernel_size + h,
        description="Depthwise causal convolution.",
    )

The user's option ``conv_kernel_size=8`` reaches the field ``kernel_size`` of ``ConvOptions``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Literal, TypeAlias

import attrs

from hybridzoo.errors import PluginError
from hybridzoo.validate import plain

if TYPE_CHECKING:  # pragma: no cover
    from torch import nn

__all__ = [
    "PLUGIN_API_VERSION",
    "Capabilities",
    "LayerSpec",
    "boolean",
    "choice",
    "float_in",
    "int_at_least",
    "option",
    "option_fields",
    "power_of_two",
    "validate_spec",
]

#: Version of the plugin API (hooks, :class:`LayerSpec`, the body protocol, the conformance kit).
#: A spec declares the version it was written for; a newer one than this is refused clearly.
#: Versions are additive: a spec written for an older version keeps working.
PLUGIN_API_VERSION = 2

Factory: TypeAlias = "Callable[[Any, int], nn.Module | Sequence[nn.Module]]"
Formula: TypeAlias = Callable[[Any, int], int]

_NAME_RE = re.compile(r"^[a-z][a-z0-9_]*$")
_TARGET_RE = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")


def option(
    default: Any,
    *,
    doc: str,
    validator: Callable[[Any, attrs.Attribute, Any], None] | None = None,
    examples: Sequence[Any] | None = None,
) -> Any:
    """Declare one field of a plugin's options record (an ``attrs`` field with metadata).

    Args:
        default: the value used when the user gives none (every option has one).
        doc: one sentence shown by ``hybridzoo layers`` and in the docs.
        validator: an ``attrs`` validator; raise ``ValueError``/``TypeError`` naming the value.
        examples: a few small valid values that the conformance kit draws from in property tests
            (the default is always included). Without them the kit uses the default only.
    """
    metadata = {"doc": doc, "examples": tuple(examples) if examples is not None else ()}
    # numpy scalars become plain Python numbers, so records, configs and JSON hold plain values
    return attrs.field(default=default, validator=validator, converter=plain, metadata=metadata)


def option_fields(options_cls: type) -> tuple[attrs.Attribute, ...]:
    """The fields of an options record, in declaration order."""
    return attrs.fields(options_cls)


# -- validators with messages that say what was expected -------------------------------------


def int_at_least(
    minimum: int, *, allow_none: bool = False, multiple_of: int = 1
) -> Callable[..., None]:
    """Validator: an ``int`` (not a bool) ``>= minimum`` and a multiple of ``multiple_of``
    (or ``None`` when ``allow_none``)."""
    what = f"an integer >= {minimum}" + (
        f" and a multiple of {multiple_of}" if multiple_of > 1 else ""
    )
    what += " or None" if allow_none else ""

    def check(_inst: Any, attribute: attrs.Attribute, value: Any) -> None:
        if value is None and allow_none:
            return
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"must be {what}, got {value!r} ({type(value).__name__})")
        if value < minimum or value % multiple_of:
            raise ValueError(f"must be {what}, got {value!r}")

    return check


def power_of_two(_inst: Any, attribute: attrs.Attribute, value: Any) -> None:
    """Validator: a power of two (1, 2, 4, ...)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"must be a power of two (1, 2, 4, ...), got {value!r}")
    if value < 1 or value & (value - 1):
        raise ValueError(f"must be a power of two (1, 2, 4, ...), got {value!r}")


def boolean(_inst: Any, attribute: attrs.Attribute, value: Any) -> None:
    """Validator: ``True`` or ``False``."""
    if not isinstance(value, bool):
        raise TypeError(f"must be True or False, got {value!r} ({type(value).__name__})")


def float_in(
    low: float, high: float, *, low_open: bool = False, high_open: bool = False
) -> Callable[..., None]:
    """Validator: a real number in ``[low, high]`` (ends open as asked)."""

    lb, rb = ("(" if low_open else "["), (")" if high_open else "]")

    def check(_inst: Any, attribute: attrs.Attribute, value: Any) -> None:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise TypeError(f"must be a number in {lb}{low}, {high}{rb}, got {value!r}")
        ok = (value > low if low_open else value >= low) and (
            value < high if high_open else value <= high
        )
        if not ok or math.isnan(value):
            raise ValueError(f"must be in {lb}{low}, {high}{rb}, got {value!r}")

    return check


def choice(*values: Any) -> Callable[..., None]:
    """Validator: one of ``values``."""

    def check(_inst: Any, attribute: attrs.Attribute, value: Any) -> None:
        if value not in values:
            raise ValueError(f"must be one of {', '.join(map(repr, values))}; got {value!r}")

    return check


# -- the spec ----------------------------------------------------------------------------------


@attrs.frozen
class lazy:
    """A function named by an import string ``"package.module:function"``, imported on its
    first call, so that a plugin's top-level module need not import torch.

    ``LayerSpec(factory="hybridzoo_plugins.gla.layer:make_bodies")`` stores one of these.
    """

    target: str

    def __attrs_post_init__(self) -> None:
        if not isinstance(self.target, str) or not _TARGET_RE.match(self.target):
            raise PluginError(
                f"an import string must look like 'package.module:function', got {self.target!r}"
            )

    def resolve(self) -> Callable[..., Any]:
        """The named function (imported now; an error names the target)."""
        import importlib

        module_name, _, attr = self.target.partition(":")
        try:
            obj: Any = importlib.import_module(module_name)
            for part in attr.split("."):
                obj = getattr(obj, part)
        except (ImportError, AttributeError) as exc:
            raise PluginError(f"cannot import {self.target!r}: {exc}") from exc
        return obj

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.resolve()(*args, **kwargs)


@attrs.frozen
class Capabilities:
    """What a layer can do; the core and the conformance kit act on these.

    Attributes:
        causal: the output at position t depends only on inputs at positions <= t.
        stateful: every body implements ``init_state``/``step``/``prefill`` (step mode).
        complexity: time along the sequence: ``"linear"`` (incl. windowed attention) or
            ``"quadratic"``.
    """

    causal: bool = True
    stateful: bool = False
    complexity: Literal["linear", "quadratic"] = attrs.field(
        default="linear", validator=attrs.validators.in_(("linear", "quadratic"))
    )


@attrs.frozen
class LayerSpec:
    """Everything the core knows about one layer type.

    A user can write a spec with the first seven fields; the rest have defaults.

    Attributes:
        name: lower-case identifier used in patterns and configs (``"mamba"``).
        symbol: one letter used in pattern strings and ``visualize`` (``"M"``).
        option_prefix: the user's option ``<prefix>_<field>`` sets ``field`` of ``options``.
        options: a frozen ``attrs`` class; every field has a default (declare with
            :func:`option`).
        factory: ``(options, hidden_size) -> body | [body, ...]``, or the import string of such a
            function (``"my_plugin.layer:make_bodies"``, imported on first use): the block bodies
            ``[B, L, H] -> [B, L, H]``; the core wraps each one in a pre-norm residual block
            ``x + dropout(body(LayerNorm(x)))``. A list gives sub-blocks (attention then FFN).
        param_count: ``(options, hidden_size) -> int``: the exact number of parameters of the
            bodies the factory returns (without the core's norms), a closed formula.
        description: one line shown by ``hybridzoo layers``.
        capabilities: see :class:`Capabilities`.
        state_size: ``(options, hidden_size) -> int``: elements of step-mode state per sequence
            (``None`` when unknown).
        hidden_size_multiple: ``options -> int``: hidden sizes must be a multiple of it
            (e.g. RWKV's head size); ``None`` means any.
        sub_blocks: how many bodies the factory returns (their pre-norms are counted by the core).
        reference: ``(first_body, x) -> y`` (or its import string): a slow, obvious time-step
            evaluation of the first body
            (the sequence mixer) with its own weights; the kit compares the fast path with it.
        api_version: :data:`PLUGIN_API_VERSION` the spec was written for.
        scale_options: ``(options, hidden_size, *, seq_len=None) -> options``: the options
            sized for a model of width ``hidden_size`` on sequences of ``seq_len`` positions
            (``None``: unknown), e.g. a head width that follows the model width. Budget
            matching (the arena, :func:`hybridzoo.counting.scale_layer_options`) calls it for
            every layer; the fields the user set are restored afterwards. ``None``: the options
            do not depend on the width. Added in API version 2.
        active_param_count: ``(options, hidden_size) -> int``: parameters used per token when
            that is fewer than ``param_count`` (a mixture of experts); ``None``: all of them.
            Added in API version 2.
    """

    name: str
    symbol: str
    option_prefix: str
    options: type
    factory: Factory = attrs.field(converter=lambda f: lazy(f) if isinstance(f, str) else f)
    param_count: Formula
    description: str = ""
    capabilities: Capabilities = Capabilities()
    state_size: Formula | None = None
    hidden_size_multiple: Callable[[Any], int] | None = None
    sub_blocks: int = 1
    reference: Callable[[Any, Any], Any] | None = attrs.field(
        default=None, converter=lambda f: lazy(f) if isinstance(f, str) else f
    )
    api_version: int = PLUGIN_API_VERSION
    scale_options: Callable[..., Any] | None = None
    active_param_count: Formula | None = None

    def default_options(self) -> Any:
        """The options record with every default."""
        return self.options()

    def option_names(self) -> list[str]:
        """The user-facing option names, ``<prefix>_<field>``."""
        return [f"{self.option_prefix}_{f.name}" for f in attrs.fields(self.options)]


def validate_spec(spec: object, *, plugin: str | None = None, distribution: str | None = None):
    """Check that ``spec`` keeps the plugin contract; raise :class:`PluginError` saying how not.

    This is run on every spec, from an entry point or registered at run time.
    """

    def fail(problem: str) -> PluginError:
        who = f"layer {getattr(spec, 'name', '?')!r}"
        if distribution:
            who += f" from distribution {distribution!r}"
        return PluginError(f"{who}: {problem}", plugin=plugin, distribution=distribution)

    if not isinstance(spec, LayerSpec):
        raise fail(
            f"a plugin must return hybridzoo.LayerSpec objects, got {type(spec).__name__}: "
            f"{spec!r:.80}"
        )
    if spec.api_version > PLUGIN_API_VERSION:
        raise fail(
            f"it was written for plugin API version {spec.api_version}, but this hybridzoo "
            f"supports version {PLUGIN_API_VERSION}: upgrade hybridzoo (pip install -U hybridzoo)"
        )
    if not isinstance(spec.name, str) or not _NAME_RE.match(spec.name):
        raise fail(
            f"name {spec.name!r} must be a lower-case identifier "
            "(letters, digits, underscores; starting with a letter)"
        )
    if not (isinstance(spec.symbol, str) and len(spec.symbol) == 1 and spec.symbol.isalpha()):
        raise fail(f"symbol {spec.symbol!r} must be exactly one letter")
    if not isinstance(spec.option_prefix, str) or not _NAME_RE.match(spec.option_prefix):
        raise fail(f"option_prefix {spec.option_prefix!r} must be a lower-case identifier")
    if not (isinstance(spec.options, type) and attrs.has(spec.options)):
        raise fail(f"options must be an attrs class, got {spec.options!r}")
    missing = [f.name for f in attrs.fields(spec.options) if f.default is attrs.NOTHING]
    if missing:
        raise fail(
            f"every option needs a default; {', '.join(missing)} has none "
            "(declare fields with hybridzoo.option(default, doc=...))"
        )
    try:
        spec.options()
    except Exception as exc:
        raise fail(f"its default options do not validate: {exc}") from exc
    for attr in ("factory", "param_count"):
        if not callable(getattr(spec, attr)):
            raise fail(f"{attr} must be callable, got {getattr(spec, attr)!r}")
    for attr in (
        "state_size",
        "hidden_size_multiple",
        "reference",
        "scale_options",
        "active_param_count",
    ):
        value = getattr(spec, attr)
        if value is not None and not callable(value):
            raise fail(f"{attr} must be callable or None, got {value!r}")
    if not isinstance(spec.capabilities, Capabilities):
        raise fail(f"capabilities must be hybridzoo.Capabilities, got {spec.capabilities!r}")
    if isinstance(spec.sub_blocks, bool) or not isinstance(spec.sub_blocks, int):
        raise fail(f"sub_blocks must be an integer >= 1, got {spec.sub_blocks!r}")
    if spec.sub_blocks < 1:
        raise fail(f"sub_blocks must be >= 1, got {spec.sub_blocks}")

"""What a plugin hands the registry: a :class:`LayerSpec` per layer type (and a
:class:`~hybridzoo.named_patterns.NamedPattern` per named pattern).

A spec is plain data and a few callables; importing it must not import torch, so that listing the
registered layers stays cheap (the factory imports the layer's module when called, or is named by
an import string).

Example (a complete, minimal spec)::

    import attrs
    from hybridzoo.plugin import LayerSpec, at_least, option

    @attrs.frozen
    class ConvOptions:
        kernel_size: int = option(4, doc="Causal kernel length.", validator=at_least(1))

    spec = LayerSpec(
        name="conv", symbol="C", option_prefix="conv", options=ConvOptions,
        factory="my_plugin.layer:make_bodies",          # (options, hidden_size) -> body
        param_count=lambda o, h: h * o.kernel_size + h,
        description="Depthwise causal convolution.",
    )

The user's option ``conv_kernel_size=8`` reaches the field ``kernel_size`` of ``ConvOptions``.

What plugin API version 2 added (additive: a version-1 spec keeps working):

- ``LayerSpec.scale_options`` (width scaling for budget matching) and
  ``LayerSpec.active_param_count`` (mixtures of experts); the cost model's ``flops``,
  ``state_bytes`` and ``kv_cache_size``, and ``notations`` (other projects' names for a layer);
- ``factory`` and ``reference`` may be import strings ``"package.module:function"``;
- ``Capabilities.positionwise``: a layer acting on each position alone declares only this; the
  core supplies its step mode and a zero state size;
- ``LayerSpec.sub_blocks`` may be a function of the options;
- ``Capabilities.batched_state`` (default ``True``): the step state's rows can be selected and
  concatenated (generation with prompts of different lengths, beam search);
- ``Capabilities.packing``: the bodies take packed documents (``forward(x, *, seq_idx=None)``,
  see :class:`hybridzoo.plugin.PackingBody`); ``HybridModel.forward`` then takes ``seq_idx``;
- :class:`~hybridzoo.named_patterns.NamedPattern`, the record that a ``hybridzoo_named_patterns``
  hook returns (the old form, a dict of name -> function, still works);
- stricter checks: a symbol is one ASCII uppercase letter ``A``-``Z``; two layers whose option
  names would collide (prefix ``p`` with field ``x_y`` and prefix ``p_x`` with field ``y``) are a
  conflict; a named pattern whose name is taken is a conflict;
- the validators live in :mod:`hybridzoo.validate` (``at_least``, ``in_range``, ``one_of``, ...);
  this module's ``int_at_least``, ``float_in``, ``choice``, ``boolean`` and ``power_of_two`` are
  deprecated aliases of them.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Literal, TypeAlias

import attrs

from hybridzoo import validate
from hybridzoo.errors import PluginError
from hybridzoo.lazy_import import as_lazy as _lazy
from hybridzoo.lazy_import import lazy  # noqa: F401  (re-exported: hybridzoo.spec.lazy)
from hybridzoo.validate import is_integer, plain

if TYPE_CHECKING:  # pragma: no cover
    from torch import nn

__all__ = [
    "PLUGIN_API_VERSION",
    "Capabilities",
    "LayerSpec",
    "option",
    "validate_spec",
]

#: Version of the plugin API (hooks, :class:`LayerSpec`, the body protocol, the conformance kit).
#: A spec declares the version it was written for; a newer one than this is refused clearly.
#: Versions are additive: a spec written for an older version keeps working.
PLUGIN_API_VERSION = 2

Factory: TypeAlias = "Callable[[Any, int], nn.Module | Sequence[nn.Module]]"
Formula: TypeAlias = Callable[[Any, int], int]

_NAME_RE = re.compile(r"^[a-z][a-z0-9_]*$")
_SYMBOL_RE = re.compile(r"^[A-Z]$")


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
        validator: a validator of :mod:`hybridzoo.validate` (``at_least(1)``, ...) or any
            ``attrs`` validator; it raises ``ValueError``/``TypeError`` naming the value.
        examples: a few small valid values that the conformance kit draws from in property tests
            (the default is always included). Without them the kit uses the default only.
    """
    metadata = {"doc": doc, "examples": tuple(examples) if examples is not None else ()}
    # numpy scalars become plain Python numbers, so records, configs and JSON hold plain values
    return attrs.field(default=default, validator=validator, converter=plain, metadata=metadata)


@attrs.frozen
class Capabilities:
    """What a layer can do; the core and the conformance kit act on these.

    Attributes:
        causal: the output at position t depends only on inputs at positions <= t.
        stateful: every body implements ``init_state``/``step``/``prefill`` (step mode).
        complexity: time along the sequence: ``"linear"`` (incl. windowed attention) or
            ``"quadratic"``.
        positionwise: the layer acts on each position alone (a feed-forward, a KAN, a mixture
            of experts): its bodies implement ``forward`` only, the core runs step mode through
            ``forward`` on one position and counts no state. Declare nothing else (no
            ``stateful``, no ``state_size``). Added in API version 2.
        batched_state: the step state is a tuple of batch-first tensors whose rows are
            independent sequences, each at its own position (a position counter is ``[B]``;
            a cache that grows is zero-padded to concatenate): the core clones, selects and
            concatenates rows of it, as generation with prompts of different lengths and beam
            search need (the conformance kit checks it). ``False``: generation decodes such a
            model's prompts one at a time, and the kit skips those checks. Added in API
            version 2.
        packing: the layer takes packed documents: its bodies' ``forward(x, *, seq_idx=None)``
            accept ``seq_idx [B, L]`` (document numbers, non-decreasing along each row) and
            start afresh where it changes, so that a packed forward equals separate forwards
            of its documents (the protocol: :class:`hybridzoo.plugin.PackingBody`). A
            positionwise layer packs without declaring it (:attr:`supports_packing`); the core
            refuses ``seq_idx`` for a model with a layer that does neither. Added in API
            version 2.
    """

    causal: bool = True
    stateful: bool = False
    complexity: Literal["linear", "quadratic"] = attrs.field(
        default="linear", validator=validate.one_of("linear", "quadratic")
    )
    positionwise: bool = attrs.field(default=False, validator=validate.boolean)
    batched_state: bool = attrs.field(default=True, validator=validate.boolean)
    packing: bool = attrs.field(default=False, validator=validate.boolean)

    @property
    def step_mode(self) -> bool:
        """The layer runs in step mode: its bodies are stateful, or it is positionwise."""
        return self.stateful or self.positionwise

    @property
    def supports_packing(self) -> bool:
        """The layer takes packed documents: it declares :attr:`packing`, or it is positionwise
        (document boundaries change nothing at a single position)."""
        return self.packing or self.positionwise


@attrs.frozen
class LayerSpec:
    """Everything the core knows about one layer type.

    A user can write a spec with the first six fields; the rest have defaults.

    Attributes:
        name: lower-case identifier used in patterns and configs (``"conv"``).
        symbol: one ASCII uppercase letter ``A``-``Z`` used in pattern strings and
            ``visualize`` (``"C"``); lowercase, non-ASCII and fullwidth letters are refused.
        option_prefix: the user's option ``<prefix>_<field>`` sets ``field`` of ``options``.
        options: a frozen ``attrs`` class; every field has a default (declare with
            :func:`option`).
        factory: ``(options, hidden_size) -> body | [body, ...]``, or the import string of such a
            function (``"my_plugin.layer:make_bodies"``, imported on first use): the block bodies
            ``[B, L, H] -> [B, L, H]``; the core wraps each one in a pre-norm residual block
            ``x + dropout(body(LayerNorm(x)))``. A list gives sub-blocks (a mixer then an FFN).
        param_count: ``(options, hidden_size) -> int``: the exact number of parameters of the
            bodies the factory returns (without the core's norms), a closed formula.
        description: one line shown by ``hybridzoo layers``.
        capabilities: see :class:`Capabilities`.
        state_size: ``(options, hidden_size) -> int``: elements of step-mode state per sequence
            (``None`` when unknown; a positionwise layer needs none: it holds no state).
        hidden_size_multiple: ``options -> int``: hidden sizes must be a multiple of it
            (e.g. a head size); ``None`` means any.
        sub_blocks: how many bodies the factory returns (their pre-norms are counted by the
            core): an integer, or ``options -> int`` (API version 2) when an option changes it.
        reference: ``(first_body, x) -> y`` (or its import string): a slow, obvious time-step
            evaluation of the first body (the sequence mixer) with its own weights; the kit
            compares the fast path with it.
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
        flops: ``(options, hidden_size, seq_len) -> LayerFlops``: forward FLOPs on one sequence
            (see :mod:`hybridzoo.flops`); ``None``: unknown (reported so, never as zero).
        state_bytes: ``(options, hidden_size, itemsize) -> int``: bytes of the step state per
            sequence when its floating-point tensors have ``itemsize`` bytes per element, for a
            state holding integer tensors too (a position counter); ``None``:
            ``state_size · itemsize``. For a growing cache, the part that does not grow.
        kv_cache_size: ``(options, hidden_size) -> int``: elements a key/value cache holds per
            cached position (the state grows by this per token without a window); ``None``:
            no cache.
        notations: :class:`~hybridzoo.notation.Notation` records: how Megatron-LM and
            transformers write this layer (:mod:`hybridzoo.dialects`).
    """

    name: str
    symbol: str
    option_prefix: str
    options: type
    factory: Factory = attrs.field(converter=_lazy)
    param_count: Formula
    description: str = ""
    capabilities: Capabilities = Capabilities()
    state_size: Formula | None = None
    hidden_size_multiple: Callable[[Any], int] | None = None
    sub_blocks: int | Callable[[Any], int] = 1
    reference: Callable[[Any, Any], Any] | None = attrs.field(default=None, converter=_lazy)
    api_version: int = PLUGIN_API_VERSION
    scale_options: Callable[..., Any] | None = None
    active_param_count: Formula | None = None
    flops: Callable[[Any, int, int], Any] | None = None
    state_bytes: Callable[[Any, int, int], int] | None = None
    kv_cache_size: Formula | None = None
    notations: tuple[Any, ...] = attrs.field(default=(), converter=tuple)

    def default_options(self) -> Any:
        """The options record with every default."""
        return self.options()

    def option_names(self) -> list[str]:
        """The user-facing option names, ``<prefix>_<field>``."""
        return [f"{self.option_prefix}_{f.name}" for f in attrs.fields(self.options)]

    def num_sub_blocks(self, options: Any) -> int:
        """How many bodies the factory returns for ``options`` (checked: an integer >= 1)."""
        count = self.sub_blocks(options) if callable(self.sub_blocks) else self.sub_blocks
        if not is_integer(count) or count < 1:
            raise PluginError(
                f"layer {self.name!r}: sub_blocks must be >= 1 (an integer), got {count!r}",
                plugin=self.name,
            )
        return int(count)

    def params(self, options: Any, hidden_size: int) -> int:
        """``param_count(options, hidden_size)``, checked: an integer >= 0 (else a
        :class:`~hybridzoo.PluginError` naming the layer)."""
        return self._checked("param_count", self.param_count(options, hidden_size))

    def step_state_size(self, options: Any, hidden_size: int) -> int | None:
        """Elements of step-mode state per sequence: the ``state_size`` formula's result
        (checked: an integer >= 0, or ``None`` for a state that grows with the sequence), 0 for
        a positionwise layer that declares none, ``None`` when unknown."""
        if self.state_size is None:
            return 0 if self.capabilities.positionwise else None
        size = self.state_size(options, hidden_size)
        return None if size is None else self._checked("state_size", size)

    def _checked(self, formula: str, value: Any) -> int:
        if is_integer(value) and value >= 0:
            return int(value)
        raise PluginError(
            f"layer {self.name!r}: its {formula} formula returned {value!r} "
            f"({type(value).__name__}), not an integer >= 0; the plugin must be fixed",
            plugin=self.name,
        )


def plugin_failure(
    kind: str, name: object, plugin: str | None, distribution: str | None
) -> Callable[[str], PluginError]:
    """``fail(problem)`` -> a :class:`PluginError` naming the ``kind`` ``name`` and its origin."""

    def fail(problem: str) -> PluginError:
        who = f"{kind} {name!r}"
        if distribution:
            who += f" from distribution {distribution!r}"
        return PluginError(f"{who}: {problem}", plugin=plugin, distribution=distribution)

    return fail


def validate_spec(
    spec: object, *, plugin: str | None = None, distribution: str | None = None
) -> None:
    """Check that ``spec`` keeps the plugin contract; raise :class:`PluginError` saying how not.

    This is run on every spec, from an entry point or registered at run time.
    """
    fail = plugin_failure("layer", getattr(spec, "name", "?"), plugin, distribution)
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
    if not isinstance(spec.symbol, str) or not _SYMBOL_RE.match(spec.symbol):
        raise fail(
            f"symbol {spec.symbol!r} must be exactly one letter, an ASCII uppercase one A-Z "
            "(lowercase, non-ASCII and fullwidth letters are refused: 'Ｘ' looks like 'X')"
        )
    if not isinstance(spec.option_prefix, str) or not _NAME_RE.match(spec.option_prefix):
        raise fail(f"option_prefix {spec.option_prefix!r} must be a lower-case identifier")
    if not (isinstance(spec.options, type) and attrs.has(spec.options)):
        raise fail(f"options must be an attrs class, got {spec.options!r}")
    missing = [f.name for f in attrs.fields(spec.options) if f.default is attrs.NOTHING]
    if missing:
        raise fail(
            f"every option needs a default; {', '.join(missing)} has none "
            "(declare fields with hybridzoo.plugin.option(default, doc=...))"
        )
    try:
        defaults = spec.options()
    except Exception as exc:
        raise fail(f"its default options do not validate: {exc}") from exc
    for attr in ("factory", "param_count"):
        if not callable(getattr(spec, attr)):
            raise fail(f"{attr} must be callable, got {getattr(spec, attr)!r}")
    optional = ("state_size", "hidden_size_multiple", "reference", "scale_options", "flops")
    for attr in (*optional, "active_param_count", "state_bytes", "kv_cache_size"):
        value = getattr(spec, attr)
        if value is not None and not callable(value):
            raise fail(f"{attr} must be callable or None, got {value!r}")
    if not isinstance(spec.capabilities, Capabilities):
        raise fail(f"capabilities must be hybridzoo.Capabilities, got {spec.capabilities!r}")
    if not callable(spec.sub_blocks) and not (is_integer(spec.sub_blocks) and spec.sub_blocks >= 1):
        raise fail(
            "sub_blocks must be >= 1 (an integer, or a function of the options), got "
            f"{spec.sub_blocks!r}"
        )
    try:
        spec.num_sub_blocks(defaults)
    except PluginError as exc:
        raise fail(str(exc).partition(": ")[2]) from None
    from hybridzoo.notation import notation_problem

    problem = notation_problem(spec.notations, spec.options)
    if problem:
        raise fail(problem)


# -- deprecated spellings ------------------------------------------------------------------------


def _int_at_least(minimum: int, *, allow_none: bool = False, multiple_of: int = 1) -> Any:
    return validate.at_least(minimum, multiple_of=multiple_of, allow_none=allow_none)


def _float_in(low: float, high: float, *, low_open: bool = False, high_open: bool = False) -> Any:
    return validate.in_range(low, high, low_open=low_open, high_open=high_open)


_DEPRECATED: dict[str, tuple[Any, str]] = {
    "int_at_least": (_int_at_least, "hybridzoo.plugin.at_least"),
    "float_in": (_float_in, "hybridzoo.plugin.in_range"),
    "choice": (validate.one_of, "hybridzoo.plugin.one_of"),
    "boolean": (validate.boolean, "hybridzoo.plugin.boolean"),
    "power_of_two": (validate.power_of_two, "hybridzoo.plugin.power_of_two"),
    "option_fields": (attrs.fields, "attrs.fields"),
}


def __getattr__(name: str) -> Any:
    if name in _DEPRECATED:
        value, new = _DEPRECATED[name]
        warnings.warn(
            f"hybridzoo.spec.{name} is deprecated; use {new}", DeprecationWarning, stacklevel=2
        )
        return value
    raise AttributeError(f"module 'hybridzoo.spec' has no attribute {name!r}")

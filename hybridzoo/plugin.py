"""The plugin-author API of hybridzoo, versioned by :data:`PLUGIN_API_VERSION`.

Everything a layer plugin needs, in one import::

    from hybridzoo.plugin import LayerSpec, Capabilities, option, hookimpl, at_least

- :class:`LayerSpec`, :class:`Capabilities`, :func:`option`: what a layer plugin declares;
- :func:`count_option`, :func:`heads_option`, :func:`conv_size_option`,
  :func:`chunk_size_option`, :func:`positive_option`, :func:`norm_eps_option`,
  :func:`flag_option`: ``option`` fields of the kinds many layers share (see
  :mod:`hybridzoo.option_kinds`);
- :class:`NamedPattern`: what a named-pattern plugin declares;
- :data:`hookimpl`: marks the plugin's hook functions (see :mod:`hybridzoo.hookspecs`);
- :func:`layer_spec`, :func:`specs_hook`, :func:`resolve_options`, :func:`option_kwargs`: the
  layer-plugin convention in code (a spec from the package's formulas module and conventional
  import strings, the hook in one line, a module's options from the record and keyword changes,
  a record as keywords; see :mod:`hybridzoo.convention`);
- :func:`register_layer`, :func:`unregister_layer`, :func:`register_pattern`,
  :func:`unregister_pattern`: run-time registration;
- the validators of :mod:`hybridzoo.validate` (``at_least``, ``power_of_two``, ``boolean``,
  ``in_range``, ``positive``, ``one_of``), for options records and module constructors alike;
- the shared parameter formulas of :mod:`hybridzoo.formulas`;
- :class:`Body`, :class:`StatefulBody` and :class:`PackingBody`: the protocols of what a
  factory returns.

The kernels a plugin may build on are :mod:`hybridzoo.ops`; the conformance kit is
:mod:`hybridzoo.testing`. Within one API version names are only added, never removed or changed;
what version 2 added is listed in :mod:`hybridzoo.spec`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol, runtime_checkable

from hybridzoo.convention import layer_spec, option_kwargs, resolve_options, specs_hook
from hybridzoo.flops import LayerFlops, causal_context, feedforward_flops, linear_flops
from hybridzoo.formulas import (
    feedforward_param_count,
    layer_norm_param_count,
    linear_param_count,
    whole_product,
)
from hybridzoo.hookspecs import hookimpl
from hybridzoo.named_patterns import NamedPattern
from hybridzoo.notation import UNSET, Notation, Setting
from hybridzoo.option_kinds import (
    chunk_size_option,
    conv_size_option,
    count_option,
    flag_option,
    heads_option,
    norm_eps_option,
    positive_option,
)
from hybridzoo.spec import PLUGIN_API_VERSION, Capabilities, LayerSpec, option
from hybridzoo.validate import at_least, boolean, in_range, one_of, positive, power_of_two

if TYPE_CHECKING:  # pragma: no cover
    from torch import Tensor

__all__ = [
    "PLUGIN_API_VERSION",
    "UNSET",
    "Body",
    "Capabilities",
    "LayerFlops",
    "LayerSpec",
    "NamedPattern",
    "Notation",
    "PackingBody",
    "Setting",
    "StatefulBody",
    "at_least",
    "boolean",
    "causal_context",
    "chunk_size_option",
    "conv_size_option",
    "count_option",
    "feedforward_flops",
    "feedforward_param_count",
    "flag_option",
    "heads_option",
    "hookimpl",
    "in_range",
    "layer_norm_param_count",
    "layer_spec",
    "linear_flops",
    "linear_param_count",
    "norm_eps_option",
    "one_of",
    "option",
    "option_kwargs",
    "positive",
    "positive_option",
    "power_of_two",
    "register_layer",
    "register_pattern",
    "resolve_options",
    "specs_hook",
    "unregister_layer",
    "unregister_pattern",
    "whole_product",
]


@runtime_checkable
class Body(Protocol):
    """What a factory returns: an ``nn.Module`` mapping ``[B, L, H]`` to ``[B, L, H]``.

    The core wraps it in a pre-norm residual block ``x + dropout(body(norm(x)))``.
    """

    def forward(self, x: Tensor) -> Tensor: ...


@runtime_checkable
class StatefulBody(Body, Protocol):
    """A body with a step mode (``capabilities.stateful``).

    A state is a tuple of tensors, each with the batch as its first dimension and nothing shared
    between rows (a position counter is ``[B]``), so that the core can copy, select, concatenate
    and move states without knowing the layer. Step mode is for inference: ``step`` updates the
    state in place (autograd does not go through it) and returns it; ``prefill`` leaves the
    given state alone and returns a new one.
    """

    def init_state(self, batch_size: int) -> tuple[Tensor, ...]: ...

    def step(self, x_t: Tensor, state: tuple[Tensor, ...]) -> tuple[Tensor, tuple[Tensor, ...]]: ...

    def prefill(
        self, x: Tensor, state: tuple[Tensor, ...] | None = None
    ) -> tuple[Tensor, tuple[Tensor, ...]]: ...


@runtime_checkable
class PackingBody(Body, Protocol):
    """A body of a layer that declares ``capabilities.packing``: its forward takes packed
    documents.

    ``forward(x [B, L, H], *, seq_idx=None)``. ``seq_idx [B, L]`` (int64, on ``x``'s device,
    non-decreasing along each row: validated once by the core) numbers the documents
    concatenated in each row; where ``seq_idx[b, t] != seq_idx[b, t-1]`` a new document starts
    and the body starts afresh: recurrent states from zero, causal convolutions and token
    shifts reading zeros instead of the previous document, attention within the document,
    positions from 0. Each document's outputs and gradients then equal those of a forward of
    that document alone (the conformance kit checks it, and that a NaN planted at any position
    leaves the outputs before it unchanged). ``seq_idx=None`` is the plain forward.

    The boundaries go to the kernels (:mod:`hybridzoo.ops` takes ``seq_idx``): no Python loop
    over documents. :mod:`hybridzoo.packing` has ``document_starts`` and
    ``document_positions``. Every body of the layer is called with ``seq_idx`` except a
    per-position sub-block derived from :class:`hybridzoo.nn.Positionwise` (a feed-forward after
    the mixer), called without it; a positionwise layer packs without declaring anything. A
    stateful body's ``prefill`` may take ``seq_idx`` as well, and the spec's ``reference`` may
    take it as a keyword: the kit then compares it with the packed forward.
    """

    def forward(self, x: Tensor, *, seq_idx: Tensor | None = None) -> Tensor: ...


def register_layer(spec: LayerSpec, *, replace: bool = False) -> LayerSpec:
    """Register a layer with the default registry (see :func:`hybridzoo.register_layer`)."""
    from hybridzoo import register_layer as register

    return register(spec, replace=replace)


def unregister_layer(name: str) -> LayerSpec:
    """Remove a layer from the default registry; returns its spec."""
    from hybridzoo import unregister_layer as unregister

    return unregister(name)


def register_pattern(pattern: NamedPattern, *, replace: bool = False) -> NamedPattern:
    """Register a named pattern with the default registry; a taken name is an error unless
    ``replace=True``."""
    from hybridzoo.registry import get_registry

    return get_registry().register_pattern(pattern, replace=replace)


def unregister_pattern(name: str) -> NamedPattern:
    """Remove a named pattern from the default registry; returns it."""
    from hybridzoo.registry import get_registry

    return get_registry().unregister_pattern(name)

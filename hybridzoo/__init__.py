"""hybridzoo: hybrid sequence models (Mamba, attention, GLA, RWKV, FFN, KAN, ...) from a pattern.

    >>> import hybridzoo
    >>> model = hybridzoo.build("C C P", embed_dim=287, conv_kernel_size=8)  # doctest: +SKIP
    >>> hybridzoo.param_count("C C P", embed_dim=287, conv_kernel_size=8)  # doctest: +SKIP

(``C`` and ``P`` stand for any two layers; ``hybridzoo layers`` lists the installed ones.)

Every layer type is a plugin (entry-point group ``hybridzoo.layers``). Importing this package does
not import torch; building a model does. This module is the user API; plugin authors import
:mod:`hybridzoo.plugin`.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

from hybridzoo.budget import BudgetMatch, match_budget
from hybridzoo.builder import build, build_pattern
from hybridzoo.config import HybridConfig
from hybridzoo.cost import CostCard, PositionCost, cost
from hybridzoo.counting import (
    LayerCount,
    active_param_count,
    param_breakdown,
    param_count,
    state_numel,
    state_size,
)
from hybridzoo.dialects import format_pattern, parse_pattern
from hybridzoo.errors import (
    CheckpointError,
    ConfigError,
    ConversionError,
    DialectWarning,
    HybridZooError,
    OptionError,
    PackingError,
    PatternError,
    PluginConflictError,
    PluginError,
    ShapeError,
    StateError,
    StepModeWarning,
    UnknownLayerError,
    UnknownOptionError,
    UnusedOptionWarning,
)
from hybridzoo.hookspecs import hookimpl
from hybridzoo.lm import LMConfig, build_lm, from_transformers, lm_param_count, to_transformers
from hybridzoo.losses import aux_losses
from hybridzoo.model_options import ModelOptions
from hybridzoo.named_patterns import PatternInfo, expand_named_pattern, list_patterns
from hybridzoo.patterns import pattern, visualize
from hybridzoo.positions import Pattern
from hybridzoo.registry import Registry, get_registry, use_registry
from hybridzoo.spec import PLUGIN_API_VERSION, Capabilities, LayerSpec, option
from hybridzoo.state import HybridState

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from hybridzoo.lm.model import HybridLM
    from hybridzoo.model import HybridModel

try:
    __version__ = version("hybridzoo")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0.0.0"

__all__ = [
    "PLUGIN_API_VERSION",
    "BudgetMatch",
    "Capabilities",
    "CheckpointError",
    "ConfigError",
    "ConversionError",
    "CostCard",
    "DialectWarning",
    "HybridConfig",
    "HybridLM",
    "HybridModel",
    "HybridState",
    "HybridZooError",
    "LMConfig",
    "LayerCount",
    "LayerSpec",
    "ModelOptions",
    "OptionError",
    "PackingError",
    "Pattern",
    "PatternError",
    "PatternInfo",
    "PluginConflictError",
    "PluginError",
    "PositionCost",
    "Registry",
    "ShapeError",
    "StateError",
    "StepModeWarning",
    "UnknownLayerError",
    "UnknownOptionError",
    "UnusedOptionWarning",
    "__version__",
    "active_param_count",
    "aux_losses",
    "build",
    "build_lm",
    "build_pattern",
    "cost",
    "expand_named_pattern",
    "format_pattern",
    "from_transformers",
    "get_layer",
    "get_registry",
    "hookimpl",
    "layer",
    "list_layers",
    "list_patterns",
    "lm_param_count",
    "load",
    "match_budget",
    "option",
    "param_breakdown",
    "param_count",
    "parse_pattern",
    "pattern",
    "register_layer",
    "state_numel",
    "state_size",
    "temporary_layers",
    "to_transformers",
    "unregister_layer",
    "use_registry",
    "visualize",
]


def register_layer(spec: LayerSpec, *, replace: bool = False) -> LayerSpec:
    """Register a layer defined in your own code with the default registry.

    It is validated like an installed plugin; a taken name is an error unless ``replace=True``.
    """
    return get_registry().register(spec, replace=replace)


def unregister_layer(name: str) -> LayerSpec:
    """Remove a layer from the default registry; returns its spec."""
    return get_registry().unregister(name)


def get_layer(name: str) -> LayerSpec:
    """The spec of a registered layer, by name or symbol (:class:`UnknownLayerError` with the
    close matches otherwise)."""
    registry = get_registry()
    if not isinstance(name, str):
        raise UnknownLayerError(name, registry.names())
    return registry.resolve(name)


def _glob(glob: object, what: str) -> str:
    if not isinstance(glob, str):
        raise OptionError(
            f"{what} takes a shell-style pattern (a str) such as '*' or '*attn*', got {glob!r}"
        )
    return glob


def list_layers(glob: str = "*") -> list[str]:
    """Registered layer names matching a shell-style pattern, e.g. ``list_layers("*attn*")``."""
    return get_registry().list(_glob(glob, "list_layers"))


def load(
    path: str | os.PathLike[str],
    *,
    device: str | torch.device | None = None,
    dtype: torch.dtype | None = None,
) -> Any:
    """Load any model saved by its ``save(directory)`` (:class:`HybridModel`,
    :class:`HybridLM`): the class is named in its ``config.json`` (``kind``). The weights come
    back in the dtype they were saved in (or ``dtype``), on ``device`` (default CPU),
    **in eval mode**; they are checked against the digest recorded at save
    (:class:`CheckpointError` naming the file otherwise).
    """
    from hybridzoo.checkpoint import load as load_checkpoint

    return load_checkpoint(path, device=device, dtype=dtype)


@contextlib.contextmanager
def temporary_layers(*specs: LayerSpec, replace: bool = False) -> Iterator[list[LayerSpec]]:
    """Register ``specs`` (layer specs or named patterns) in the default registry inside a
    ``with`` block only (tests); on exit only what the block added is removed."""
    with get_registry().registered(*specs, replace=replace) as registered:
        yield registered


def layer(
    *,
    name: str,
    symbol: str,
    option_prefix: str | None = None,
    options: type,
    param_count: Callable[[Any, int], int],
    replace: bool = False,
    **spec_fields: Any,
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorator form of :func:`register_layer`: the decorated function is the factory.

    ::

        @hybridzoo.layer(name="conv", symbol="C", options=ConvOptions,
                         param_count=lambda o, h: h * o.kernel_size + h)
        def conv(options, hidden_size):
            \"\"\"Depthwise causal convolution.\"\"\"
            return CausalConv(hidden_size, options.kernel_size)

        hybridzoo.testing.assert_conforms(conv.spec)   # the kit takes the attached spec

    The factory is called as ``factory(options, hidden_size)``, with ``options`` an instance of
    the ``options`` record (the user's ``<option_prefix>_<field>`` values, validated), and returns
    one body ``[B, L, H] -> [B, L, H]`` or a list of ``sub_blocks`` bodies.

    Args:
        name, symbol, options, param_count: as in :class:`LayerSpec`.
        option_prefix: defaults to ``name``.
        replace: replace a registered layer of the same name (as :func:`register_layer`).
        **spec_fields: any other :class:`LayerSpec` field (``capabilities``, ``state_size``,
            ``sub_blocks``, ``reference``, ``hidden_size_multiple``, ``scale_options``,
            ``active_param_count``, ``api_version``; ``description`` defaults to the function's
            docstring).

    Returns the function itself, registered in the default registry, with its spec attached as
    ``function.spec``.
    """

    def decorate(factory: Callable[..., Any]) -> Callable[..., Any]:
        spec = LayerSpec(
            name=name,
            symbol=symbol,
            option_prefix=option_prefix or name,
            options=options,
            factory=factory,
            param_count=param_count,
            description=spec_fields.pop("description", (factory.__doc__ or "").strip()),
            **spec_fields,
        )
        register_layer(spec, replace=replace)
        factory.spec = spec  # type: ignore[attr-defined]
        return factory

    return decorate


def __getattr__(name: str) -> Any:
    # torch is imported only when a model class is first needed
    if name == "HybridModel":
        from hybridzoo.model import HybridModel

        return HybridModel
    if name == "HybridLM":
        from hybridzoo.lm.model import HybridLM

        return HybridLM
    raise AttributeError(f"module 'hybridzoo' has no attribute {name!r}")

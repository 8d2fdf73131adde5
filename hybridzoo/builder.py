"""``build`` and ``build_pattern``: from a pattern and options to a :class:`HybridModel`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from hybridzoo.config import HybridConfig
from hybridzoo.errors import OptionError
from hybridzoo.model_options import describe_model_options, with_model_options
from hybridzoo.named_patterns import expand_named_pattern
from hybridzoo.patterns import PatternLike
from hybridzoo.registry import Registry

if TYPE_CHECKING:  # pragma: no cover
    from hybridzoo.model import HybridModel

__all__ = ["build", "build_pattern"]


@with_model_options
def build(
    pattern: PatternLike | HybridConfig,
    *,
    dialect: str = "native",
    model_type: str | None = None,
    registry: Registry | None = None,
    **options: Any,
) -> HybridModel:
    """Build a hybrid model.

    Args:
        pattern: ``"C C P"``, ``"(CCP)*4"``, ``"C C{kernel_size=8} P"`` (a position's own
            options), ``["conv", {"type": "conv", "kernel_size": 8}, "mlp"]`` (layer names,
            symbols, entries), a pattern from :func:`hybridzoo.parse_pattern`, or a
            :class:`HybridConfig` (then no option is accepted, whatever its value: use
            ``build(config.replace(...))`` to change one).
        dialect, model_type: the notation of ``pattern``: ``"native"`` (hybridzoo's grammar),
            ``"megatron"`` (``--hybrid-layer-pattern``) or ``"transformers"`` (a
            ``layer_types`` list with ``model_type``, or a configuration); see
            :func:`hybridzoo.parse_pattern`.
        registry: where layers are looked up (default: :func:`hybridzoo.get_registry`).
        **options: the model options below (``embed_dim`` is required) and the layers'
            ``<prefix>_<field>`` options, e.g. ``conv_kernel_size=8`` for a layer with prefix
            ``conv`` (see ``hybridzoo layers``).

    Model options (:class:`hybridzoo.ModelOptions`):
        {model_options}

    Raises:
        HybridZooError: (subclasses) for an unknown layer, a bad pattern or bad options; every
            problem of the call is reported at once.
    """
    from hybridzoo.model import HybridModel

    if isinstance(pattern, HybridConfig):
        if options:
            raise OptionError(
                f"build(config) takes no other arguments, got {', '.join(options)}; "
                "use build(config.replace(...)) to change a config"
            )
        return HybridModel(pattern, registry=registry)
    if options.get("embed_dim") is None:
        raise OptionError("build() needs embed_dim, the width of the input [B, L, embed_dim]")
    from hybridzoo.dialects import coerce_pattern
    from hybridzoo.registry import get_registry

    registry = registry or get_registry()
    pattern = coerce_pattern(pattern, dialect, model_type=model_type, registry=registry)
    config = HybridConfig.create(pattern, registry=registry, **options)
    return HybridModel(config, registry=registry)


build.__doc__ = (build.__doc__ or "").replace(
    "{model_options}", describe_model_options(indent=" " * 8).lstrip()
)


def build_pattern(name: str, num_layers: int, **options: Any) -> HybridModel:
    """``build(expand_named_pattern(name, num_layers), **options)``: a named pattern
    (``"jamba_like"``)."""
    return build(expand_named_pattern(name, num_layers), **options)

"""``build`` and ``build_pattern``: from a pattern and options to a :class:`HybridModel`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from hybridzoo.config import HybridConfig
from hybridzoo.named_patterns import expand_named_pattern
from hybridzoo.patterns import PatternLike

if TYPE_CHECKING:  # pragma: no cover
    from hybridzoo.model import HybridModel

__all__ = ["build", "build_pattern"]


def build(
    pattern: PatternLike | HybridConfig,
    *,
    embed_dim: int | None = None,
    hidden_size: int = 256,
    dropout: float = 0.1,
    shared_layers: Mapping[str, Sequence[int]] | None = None,
    output: str = "last",
    positional_encoding: str | None = None,
    norm_eps: float = 1e-5,
    **layer_options: Any,
) -> HybridModel:
    """Build a hybrid model.

    Args:
        pattern: ``"C C P"``, ``"(CCP)*4"``, ``["conv", "mlp"]`` (layer names or symbols) or a
            :class:`HybridConfig` (then no other argument is accepted).
        embed_dim: width of the input ``[B, L, embed_dim]`` (required unless a config is given).
        hidden_size: width of the residual stream (default 256).
        dropout: on each block's output (default 0.1).
        shared_layers: ``{"conv": [2, 4]}``: one block of that layer, one set of weights, applied
            after positions 2 and 4 (1-based).
        output: ``"last"`` → ``[B, hidden]`` or ``"sequence"`` → ``[B, L, hidden]``.
        positional_encoding: ``None`` (default) or ``"sinusoidal"``.
        norm_eps: LayerNorm epsilon.
        **layer_options: ``<prefix>_<field>`` options of the layers, e.g.
            ``conv_kernel_size=8`` for a layer with prefix ``conv`` (see ``hybridzoo layers``).

    Raises:
        HybridZooError: (subclasses) for an unknown layer, a bad pattern or bad options; every
            problem of the call is reported at once.
    """
    from hybridzoo.errors import OptionError
    from hybridzoo.model import HybridModel

    if isinstance(pattern, HybridConfig):
        given = {
            "embed_dim": embed_dim is not None,
            "hidden_size": hidden_size != 256,
            "dropout": dropout != 0.1,
            "shared_layers": shared_layers is not None,
            "output": output != "last",
            "positional_encoding": positional_encoding is not None,
            "norm_eps": norm_eps != 1e-5,
            **dict.fromkeys(layer_options, True),
        }
        extra = [name for name, passed in given.items() if passed]
        if extra:
            raise OptionError(
                f"build(config) takes no other arguments, got {', '.join(extra)}; "
                "use build(config.replace(...)) to change a config"
            )
        return HybridModel(pattern)
    if embed_dim is None:
        raise OptionError("build() needs embed_dim, the width of the input [B, L, embed_dim]")
    config = HybridConfig.create(
        pattern,
        embed_dim=embed_dim,
        hidden_size=hidden_size,
        dropout=dropout,
        shared_layers=shared_layers,
        output=output,
        positional_encoding=positional_encoding,
        norm_eps=norm_eps,
        **layer_options,
    )
    return HybridModel(config)


def build_pattern(name: str, num_layers: int, **options: Any) -> HybridModel:
    """``build(expand_named_pattern(name, num_layers), **options)``: a named pattern
    (``"jamba_like"``)."""
    return build(expand_named_pattern(name, num_layers), **options)

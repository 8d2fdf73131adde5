"""Reading another library's layer weights: the shared first step of the plugins' converters."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from torch import Tensor, nn

__all__ = ["config_field", "load_converted", "source_state_dict"]


def config_field(config: Any, name: str, default: Any = None) -> Any:
    """Field ``name`` of another library's config: an object with attributes, or a mapping of
    its fields (``default`` when it has none)."""
    if isinstance(config, Mapping):
        return config.get(name, default)
    return getattr(config, name, default)


def source_state_dict(
    source: nn.Module | Mapping[str, Tensor], *, prefix: str = "", required: str
) -> dict[str, Tensor]:
    """The state dict of ``source`` (a module, or a state dict), with the keys that start with
    ``prefix`` kept and the prefix stripped.

    Args:
        source: the other library's layer, or its (model's) state dict.
        prefix: e.g. ``"backbone.layers.0.mixer."`` to take one layer out of a model's weights.
        required: a key the layer's weights always have; a ``ValueError`` lists the keys found
            when it is missing (a wrong prefix, or another kind of layer).
    """
    if isinstance(source, nn.Module):
        state: Mapping[str, Any] = source.state_dict()
    elif isinstance(source, Mapping):
        state = source
    else:
        raise TypeError(f"source must be a module or a state dict, got {type(source).__name__}")
    out = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
    if required not in out:
        raise ValueError(
            f"no {required!r} in the state dict (prefix {prefix!r}); keys: {sorted(out)[:20]}"
        )
    return out


def load_converted(
    build: Callable[..., nn.Module], state: Mapping[str, Tensor], source: object
) -> nn.Module:
    """``build(device=, dtype=)`` placed like the weights of ``state``, which it then loads
    (strictly); in ``source``'s train/eval mode when ``source`` is a module."""
    ref = next(iter(state.values()))
    module = build(device=ref.device, dtype=ref.dtype)
    module.load_state_dict(state, strict=True)
    if isinstance(source, nn.Module):
        module.train(source.training)
    return module

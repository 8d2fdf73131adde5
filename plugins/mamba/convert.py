"""Build a :class:`~hybridzoo_plugins.mamba.layer.MambaMixer` from a transformers ``MambaMixer``.

transformers' ``MambaMixer`` (and ``mamba_ssm``'s ``Mamba``) use the same parameter names and
shapes as ours, so conversion is reading the sizes from the config and loading the state dict.
transformers is not imported here: any object (or mapping) with the config fields works.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import partial
from typing import Any

import torch
from torch import nn

from hybridzoo.nn.interop import config_field, load_converted, source_state_dict
from hybridzoo_plugins.mamba.layer import MambaMixer

__all__ = ["mixer_from_transformers", "mixer_kwargs_from_config"]


def mixer_kwargs_from_config(config: Any) -> dict[str, Any]:
    """The :class:`MambaMixer` keyword arguments for a transformers ``MambaConfig`` (or mapping).

    Reads ``hidden_size``, ``state_size``, ``intermediate_size`` (or ``expand``),
    ``conv_kernel``, ``time_step_rank``, ``use_conv_bias``, ``use_bias``, ``time_step_min``,
    ``time_step_max``, ``time_step_floor``; ``hidden_act`` must be ``"silu"``.
    """
    hidden = config_field(config, "hidden_size")
    if hidden is None:
        raise ValueError("config has no hidden_size; expected a transformers MambaConfig")
    act = config_field(config, "hidden_act", "silu")
    if act != "silu":
        raise ValueError(f"only hidden_act='silu' is supported (Mamba-1), got {act!r}")
    inner = config_field(config, "intermediate_size")
    expand = inner / hidden if inner is not None else config_field(config, "expand", 2)
    if isinstance(expand, float) and expand.is_integer():
        expand = int(expand)
    return {
        "hidden_size": int(hidden),
        "state_size": int(config_field(config, "state_size", 16)),
        "expand_factor": expand,
        "conv_size": int(config_field(config, "conv_kernel", 4)),
        "dt_rank": config_field(config, "time_step_rank", "auto"),
        "dt_min": float(config_field(config, "time_step_min", 0.001)),
        "dt_max": float(config_field(config, "time_step_max", 0.1)),
        "dt_init_floor": float(config_field(config, "time_step_floor", 1e-4)),
        "conv_bias": bool(config_field(config, "use_conv_bias", True)),
        "bias": bool(config_field(config, "use_bias", False)),
    }


def mixer_from_transformers(
    source: nn.Module | Mapping[str, torch.Tensor],
    config: Any = None,
    *,
    prefix: str = "",
    **overrides: Any,
) -> MambaMixer:
    """A :class:`MambaMixer` with the weights of a transformers ``MambaMixer``; same outputs.

    Args:
        source: a transformers ``MambaMixer`` module (its ``config`` is used), or a state dict.
        config: the ``MambaConfig`` (or a mapping of its fields); required with a state dict.
        prefix: key prefix to strip from the state dict (``"backbone.layers.0.mixer."``).
        overrides: other :class:`MambaMixer` keywords (``scan_backend``, ...).

    The new module has the dtype and device of the weights, and is in eval mode if the source
    module is.
    """
    if config is None and isinstance(source, nn.Module):
        config = getattr(source, "config", None)
    state = source_state_dict(source, prefix=prefix, required="A_log")
    if config is None:
        raise ValueError("config is required when converting from a state dict")
    kwargs = {**mixer_kwargs_from_config(config), **overrides}
    return load_converted(partial(MambaMixer, **kwargs), state, source)

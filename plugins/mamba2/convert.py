"""Mamba-2 mixers to and from transformers: ``Mamba2Mixer`` (``Mamba2Config``) and Nemotron-H's
``NemotronHMamba2Mixer`` (``NemotronHConfig``).

Both use the parameter names and shapes of :class:`~hybridzoo_plugins.mamba2.layer.Mamba2Mixer`,
so a conversion reads the sizes from the config and loads the state dict as it is. transformers
is not imported here: any object (or mapping) with the config's fields works.

Differences that the conversion takes care of:

- Nemotron-H clamps the time steps to at least ``time_step_min`` (its mixer ignores
  ``time_step_limit``): ``dt_limit_min = time_step_min``;
- transformers' conv cache keeps the last ``K`` inputs, ours the last ``K - 1``
  (:func:`conv_state_from_transformers`); the SSM states have the same layout ``[B, h, P, N]``;
- ``chunk_size`` is not carried over: it changes speed only, and ours has its own default.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from functools import partial
from typing import Any

import torch
from torch import Tensor, nn

from hybridzoo.nn.interop import config_field, load_converted, source_state_dict
from hybridzoo_plugins.mamba2.layer import Mamba2Mixer

__all__ = [
    "conv_state_from_transformers",
    "conv_state_to_transformers",
    "mamba2_config_kwargs",
    "mixer_from_transformers",
    "mixer_kwargs_from_config",
]


def _whole(value: float) -> float:
    """``value`` as an ``int`` when it is one (``2.0 -> 2``)."""
    return int(value) if float(value).is_integer() else value


def mixer_kwargs_from_config(config: Any) -> dict[str, Any]:
    """The :class:`Mamba2Mixer` keywords for a ``Mamba2Config`` or a ``NemotronHConfig`` (or a
    mapping of their fields); a ``ValueError`` names a setting that has no equivalent."""
    hidden = config_field(config, "hidden_size")
    if hidden is None:
        raise ValueError("config has no hidden_size; expected a Mamba2Config or NemotronHConfig")
    nemotron = config_field(config, "mamba_num_heads") is not None
    prefix = "mamba_" if nemotron else ""
    act = config_field(config, f"{prefix}hidden_act", "silu")
    if act not in ("silu", "swish"):
        raise ValueError(f"only the SiLU activation is supported, got {prefix}hidden_act={act!r}")
    heads = int(config_field(config, f"{prefix}num_heads"))
    head_dim = int(config_field(config, f"{prefix}head_dim"))
    if nemotron:  # the inner width is heads · head_dim, and dt >= time_step_min
        inner = heads * head_dim
        limit = (float(config_field(config, "time_step_min", 0.001)), math.inf)
    else:
        inner = round(config_field(config, "expand", 2) * hidden)
        limit = tuple(float(v) for v in config_field(config, "time_step_limit", (0.0, math.inf)))
    if inner != heads * head_dim:
        raise ValueError(
            f"inconsistent config: the inner width {inner} != num_heads · head_dim = "
            f"{heads} · {head_dim}"
        )
    return {
        "hidden_size": int(hidden),
        "state_size": int(config_field(config, "ssm_state_size" if nemotron else "state_size")),
        "head_dim": head_dim,
        "expand_factor": _whole(inner / hidden),
        "num_groups": int(config_field(config, "n_groups", 1)),
        "conv_size": int(config_field(config, "conv_kernel", 4)),
        "dt_min": float(config_field(config, "time_step_min", 0.001)),
        "dt_max": float(config_field(config, "time_step_max", 0.1)),
        "dt_init_floor": float(config_field(config, "time_step_floor", 1e-4)),
        "dt_limit_min": limit[0],
        "dt_limit_max": None if limit[1] == math.inf else limit[1],
        "conv_bias": bool(config_field(config, "use_conv_bias", True)),
        "bias": bool(config_field(config, "use_bias", False)),
        "norm_eps": float(config_field(config, "layer_norm_epsilon", 1e-5)),
    }


def _module_fields(source: Any) -> dict[str, Any]:
    """The config fields a transformers ``Mamba2Mixer`` keeps as attributes (it keeps no
    config)."""
    if not isinstance(source, nn.Module) or not hasattr(source, "ssm_state_size"):
        raise ValueError("config is required when converting from a state dict")
    return {
        "hidden_size": source.hidden_size,
        "num_heads": source.num_heads,
        "head_dim": source.head_dim,
        "state_size": source.ssm_state_size,
        "expand": source.intermediate_size / source.hidden_size,
        "n_groups": source.n_groups,
        "conv_kernel": source.conv_kernel_size,
        "use_conv_bias": source.use_conv_bias,
        "use_bias": source.out_proj.bias is not None,
        "layer_norm_epsilon": source.norm.variance_epsilon,
        "time_step_min": source.time_step_min,
        "time_step_max": source.time_step_max,
        "time_step_floor": source.time_step_floor,
        "time_step_limit": source.time_step_limit,
        "hidden_act": source.activation,
    }


def mixer_from_transformers(
    source: nn.Module | Mapping[str, Tensor],
    config: Any = None,
    *,
    prefix: str = "",
    **overrides: Any,
) -> Mamba2Mixer:
    """A :class:`Mamba2Mixer` with the weights of a transformers Mamba-2 mixer; same outputs.

    Args:
        source: a transformers ``Mamba2Mixer`` or ``NemotronHMamba2Mixer``, or a state dict.
        config: the config (or a mapping of its fields); required with a state dict. A module
            gives its own: Nemotron-H's mixer keeps its config, ``Mamba2Mixer`` its sizes.
        prefix: key prefix to strip from the state dict (``"backbone.layers.0.mixer."``).
        overrides: other :class:`Mamba2Mixer` keywords (``chunk_size``, ...).

    The new module has the dtype and device of the weights, and the source module's train/eval
    mode.
    """
    state = source_state_dict(source, prefix=prefix, required="A_log")
    if config is None:
        config = getattr(source, "config", None) or _module_fields(source)
    kwargs = mixer_kwargs_from_config(config)
    limit = getattr(source, "time_step_limit", None)  # the module's own clamp wins
    if limit is not None:
        kwargs["dt_limit_min"] = float(limit[0])
        kwargs["dt_limit_max"] = None if float(limit[1]) == math.inf else float(limit[1])
    return load_converted(partial(Mamba2Mixer, **{**kwargs, **overrides}), state, source)


def mamba2_config_kwargs(mixer: Mamba2Mixer) -> dict[str, Any]:
    """The ``Mamba2Config`` fields that describe ``mixer`` (the way back: a transformers
    ``Mamba2Mixer`` built from them loads ``mixer.state_dict()`` as it is)."""
    inner, hidden = mixer.intermediate_size, mixer.hidden_size
    if inner % hidden:
        raise ValueError(
            f"Mamba2Config needs an integer expand; this mixer's is {inner} / {hidden} (a "
            "NemotronHConfig can express it: mamba_num_heads · mamba_head_dim)"
        )
    low, high = mixer.dt_limit
    return {
        "hidden_size": hidden,
        "num_heads": mixer.num_heads,
        "head_dim": mixer.head_dim,
        "state_size": mixer.state_size,
        "expand": inner // hidden,
        "n_groups": mixer.num_groups,
        "conv_kernel": mixer.conv1d.kernel_size,
        "use_conv_bias": mixer.conv1d.bias is not None,
        "use_bias": mixer.in_proj.bias is not None,
        "layer_norm_epsilon": mixer.norm.eps,
        "time_step_min": mixer.dt_min,
        "time_step_max": mixer.dt_max,
        "time_step_floor": mixer.dt_init_floor,
        "time_step_limit": (low, high),
        "hidden_act": "silu",
    }


def conv_state_from_transformers(conv_state: Tensor) -> Tensor:
    """transformers' conv cache ``[B, C, K]`` (the last K inputs) as our window ``[B, C, K-1]``
    (a copy)."""
    return conv_state[..., 1:].clone()


def conv_state_to_transformers(window: Tensor) -> Tensor:
    """Our window ``[B, C, K-1]`` as transformers' conv cache ``[B, C, K]`` (the oldest input,
    which no later output reads, as zeros)."""
    return torch.nn.functional.pad(window, (1, 0))

"""Gated DeltaNet to and from transformers' ``Qwen3NextGatedDeltaNet`` (``Qwen3NextConfig``).

Qwen3-Next fuses the projections: ``in_proj_qkvz`` holds, for each query/key head ``i``, the rows
``[q_i (dk), k_i (dk), v (r·dv), z (r·dv)]`` of its ``r = hv / h`` value heads, and
``in_proj_ba`` the rows ``[b (r), a (r)]`` per query/key head; one ``conv1d`` runs over the
channels ``[q (K), k (K), v (V)]``. Ours keeps fla's separate ``q_proj, k_proj, v_proj, g_proj
(= z), b_proj, a_proj`` and ``q_conv1d, k_conv1d, v_conv1d``; ``norm`` is ``o_norm`` and
``out_proj`` is ``o_proj``. The maps below are exact re-orderings of rows, both ways.

States: transformers' conv cache ``[B, 2K + V, c]`` keeps the last ``c`` inputs, ours the last
``c - 1`` per convolution; the delta-rule states have the same layout ``[B, hv, dk, dv]``.
transformers is not imported here: any object (or mapping) with the config's fields works.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import partial
from typing import Any

import torch
from torch import Tensor, nn

from hybridzoo.nn.interop import config_field, load_converted, source_state_dict
from hybridzoo_plugins.gated_deltanet.layer import GatedDeltaNet

__all__ = [
    "from_qwen3_next",
    "layer_kwargs_from_config",
    "qwen3_next_config_kwargs",
    "state_dict_from_qwen3_next",
    "state_dict_to_qwen3_next",
]

#: transformers' name → ours, for the tensors that map one to one
_RENAMED = {
    "dt_bias": "dt_bias",
    "A_log": "A_log",
    "norm.weight": "o_norm.weight",
    "out_proj.weight": "o_proj.weight",
}


def layer_kwargs_from_config(config: Any) -> dict[str, Any]:
    """The :class:`GatedDeltaNet` keywords for a ``Qwen3NextConfig`` (or a mapping of its
    fields); a ``ValueError`` names a setting that has no equivalent."""
    hidden = config_field(config, "hidden_size")
    if hidden is None:
        raise ValueError("config has no hidden_size; expected a Qwen3NextConfig")
    act = config_field(config, "hidden_act", "silu")
    if act not in ("silu", "swish"):
        raise ValueError(f"only the SiLU activation is supported, got hidden_act={act!r}")
    heads, v_heads = (
        int(config_field(config, "linear_num_key_heads")),
        int(config_field(config, "linear_num_value_heads")),
    )
    dk, dv = (
        int(config_field(config, "linear_key_head_dim")),
        int(config_field(config, "linear_value_head_dim")),
    )
    expand_v = dv / dk
    return {
        "hidden_size": int(hidden),
        "num_heads": heads,
        "head_dim": dk,
        "expand_v": int(expand_v) if expand_v.is_integer() else expand_v,
        "num_v_heads": None if v_heads == heads else v_heads,
        "conv_size": int(config_field(config, "linear_conv_kernel_dim", 4)),
        "norm_eps": float(config_field(config, "rms_norm_eps", 1e-6)),
    }


def _sizes(layer: GatedDeltaNet) -> tuple[int, int, int, int]:
    """``(h, r, dk, dv)``."""
    h = layer.num_heads
    return h, layer.num_v_heads // h, layer.head_k_dim, layer.head_v_dim


def state_dict_from_qwen3_next(state: Mapping[str, Tensor], layer: GatedDeltaNet) -> dict:
    """Qwen3-Next's state dict in our names and layout, for a ``layer`` of the same sizes."""
    h, r, dk, dv = _sizes(layer)
    hidden = layer.hidden_size
    qkvz = state["in_proj_qkvz.weight"].reshape(h, 2 * dk + 2 * r * dv, hidden)
    q, k, v, z = qkvz.split([dk, dk, r * dv, r * dv], dim=1)
    b, a = state["in_proj_ba.weight"].reshape(h, 2 * r, hidden).split([r, r], dim=1)
    conv_q, conv_k, conv_v = state["conv1d.weight"].split(
        [layer.key_dim, layer.key_dim, layer.value_dim]
    )
    out = {new: state[old] for old, new in _RENAMED.items()}
    weights = {"q_proj": q, "k_proj": k, "v_proj": v, "g_proj": z, "b_proj": b, "a_proj": a}
    out.update({f"{name}.weight": w.reshape(-1, hidden) for name, w in weights.items()})
    out.update({"q_conv1d.weight": conv_q, "k_conv1d.weight": conv_k, "v_conv1d.weight": conv_v})
    return out


def state_dict_to_qwen3_next(
    layer: GatedDeltaNet, tensors: Mapping[str, Tensor] | None = None
) -> dict[str, Tensor]:
    """``layer``'s weights (or ``tensors`` of their names and shapes, e.g. their gradients) as a
    ``Qwen3NextGatedDeltaNet`` state dict: fused and re-ordered."""
    h, r, dk, dv = _sizes(layer)
    hidden = layer.hidden_size
    own = {k: v.detach() for k, v in (layer.state_dict() if tensors is None else tensors).items()}

    def per_head(name: str, rows: int) -> Tensor:
        return own[f"{name}.weight"].reshape(h, rows, hidden)

    qkvz = [per_head("q_proj", dk), per_head("k_proj", dk)]
    qkvz += [per_head("v_proj", r * dv), per_head("g_proj", r * dv)]
    ba = [per_head("b_proj", r), per_head("a_proj", r)]
    out = {old: own[new] for old, new in _RENAMED.items()}
    out["in_proj_qkvz.weight"] = torch.cat(qkvz, dim=1).reshape(-1, hidden)
    out["in_proj_ba.weight"] = torch.cat(ba, dim=1).reshape(-1, hidden)
    out["conv1d.weight"] = torch.cat([own[f"{n}_conv1d.weight"] for n in "qkv"])
    return out


def _module_fields(source: Any) -> dict[str, Any]:
    """The config fields a ``Qwen3NextGatedDeltaNet`` keeps as attributes (it keeps no config)."""
    if not isinstance(source, nn.Module) or not hasattr(source, "num_k_heads"):
        raise ValueError("config is required when converting from a state dict")
    return {
        "hidden_size": source.hidden_size,
        "linear_num_key_heads": source.num_k_heads,
        "linear_num_value_heads": source.num_v_heads,
        "linear_key_head_dim": source.head_k_dim,
        "linear_value_head_dim": source.head_v_dim,
        "linear_conv_kernel_dim": source.conv_kernel_size,
        "rms_norm_eps": source.layer_norm_epsilon,
        "hidden_act": source.activation,
    }


def from_qwen3_next(
    source: nn.Module | Mapping[str, Tensor],
    config: Any = None,
    *,
    prefix: str = "",
    **overrides: Any,
) -> GatedDeltaNet:
    """A :class:`GatedDeltaNet` with the weights of a ``Qwen3NextGatedDeltaNet``; same outputs.

    Args:
        source: the transformers module, or its state dict.
        config: the ``Qwen3NextConfig`` (or a mapping of its fields); required with a state
            dict (a module gives its sizes).
        prefix: key prefix to strip from the state dict (``"model.layers.0.linear_attn."``).
        overrides: other :class:`GatedDeltaNet` keywords (``chunk_size``, ...).
    """
    state = source_state_dict(source, prefix=prefix, required="in_proj_qkvz.weight")
    kwargs = layer_kwargs_from_config(_module_fields(source) if config is None else config)
    layer = GatedDeltaNet(**{**kwargs, **overrides}, device="meta")
    ours = state_dict_from_qwen3_next(state, layer)
    return load_converted(partial(GatedDeltaNet, **{**kwargs, **overrides}), ours, source)


def qwen3_next_config_kwargs(layer: GatedDeltaNet) -> dict[str, Any]:
    """The ``Qwen3NextConfig`` fields that describe ``layer`` (the way back; a transformers
    ``Qwen3NextGatedDeltaNet`` built from them loads :func:`state_dict_to_qwen3_next`)."""
    return {
        "hidden_size": layer.hidden_size,
        "linear_num_key_heads": layer.num_heads,
        "linear_num_value_heads": layer.num_v_heads,
        "linear_key_head_dim": layer.head_k_dim,
        "linear_value_head_dim": layer.head_v_dim,
        "linear_conv_kernel_dim": layer.q_conv1d.kernel_size,
        "rms_norm_eps": layer.o_norm.eps,
        "hidden_act": "silu",
    }

"""Torch-free parameter formulas of the shared building blocks (:mod:`hybridzoo.nn`)."""

from __future__ import annotations

__all__ = ["feedforward_param_count", "layer_norm_param_count", "linear_param_count"]


def linear_param_count(in_features: int, out_features: int, *, bias: bool = True) -> int:
    """``nn.Linear(in_features, out_features, bias)``."""
    return in_features * out_features + (out_features if bias else 0)


def layer_norm_param_count(size: int) -> int:
    """``nn.LayerNorm(size)`` with its affine weight and bias."""
    return 2 * size


def feedforward_param_count(hidden_size: int, expand_factor: int = 4) -> int:
    """:class:`hybridzoo.nn.FeedForward`: ``2·e·H² + e·H + H`` (both linears with bias)."""
    inner = expand_factor * hidden_size
    return linear_param_count(hidden_size, inner) + linear_param_count(inner, hidden_size)

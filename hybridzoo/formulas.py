"""Torch-free parameter formulas of the shared building blocks (:mod:`hybridzoo.nn`)."""

from __future__ import annotations

__all__ = ["feedforward_param_count", "layer_norm_param_count", "linear_param_count"]


def linear_param_count(in_features: int, out_features: int, *, bias: bool = True) -> int:
    """``nn.Linear(in_features, out_features, bias)``."""
    return in_features * out_features + (out_features if bias else 0)


def layer_norm_param_count(size: int) -> int:
    """``nn.LayerNorm(size)`` with its affine weight and bias."""
    return 2 * size


def feedforward_param_count(
    hidden_size: int,
    expand_factor: int = 4,
    *,
    activation: str = "gelu",
    bias: bool = True,
    inner_size: int | None = None,
) -> int:
    """:class:`hybridzoo.nn.FeedForward` with inner width ``I = inner_size or expand_factor·H``.

    ``"gelu"`` and ``"relu2"``: ``Linear(H, I)`` and ``Linear(I, H)``, ``2·I·H`` weights
    (``2·e·H² + e·H + H`` with the default biases); ``"swiglu"``: a gate and an up projection
    (one ``Linear(H, 2·I)``) and ``Linear(I, H)``, ``3·I·H`` weights; biases (if ``bias``) on
    every linear.
    """
    inner = expand_factor * hidden_size if inner_size is None else inner_size
    up = 2 * inner if activation == "swiglu" else inner
    return linear_param_count(hidden_size, up, bias=bias) + linear_param_count(
        inner, hidden_size, bias=bias
    )

"""Torch-free parameter formulas of the shared building blocks (:mod:`hybridzoo.nn`)."""

from __future__ import annotations

from hybridzoo.validate import at_least, positive

__all__ = [
    "feedforward_param_count",
    "layer_norm_param_count",
    "linear_param_count",
    "whole_product",
]


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


def whole_product(size_name: str, size: int, factor_name: str, factor: float, *, what: str) -> int:
    """``size · factor`` as an ``int``: a width set by a fractional factor (``expand_factor ·
    hidden_size``, ``head_dim · expand_k``).

    ``size`` must be an integer >= 1 and ``factor`` > 0 (checked, naming them), and the product
    a whole number >= 1 up to float rounding (``30 · 0.1`` is 3); else a ``ValueError`` naming
    both, their values and ``what`` the product is ("the inner width").
    """
    at_least(1).check(size_name, size)
    product = size * positive.check(factor_name, factor)
    rounded = round(product)
    if rounded < 1 or abs(product - rounded) > 1e-6:
        raise ValueError(
            f"{size_name} · {factor_name} ({what}) must be a whole number >= 1, got "
            f"{size} · {factor!r} = {product!r}"
        )
    return int(rounded)

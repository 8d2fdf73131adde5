"""Closed formulas for the GLA layer: widths, parameter count, decoding-state size (no torch).

The ``gla`` *layer* is two bodies (see ``make_gla_bodies`` in :mod:`hybridzoo_plugins.gla.layer`):
the :class:`GatedLinearAttention` body and the feed-forward body that follows it.

Widths (``H`` = hidden_size, ``h`` = num_heads): each head has a value width ``dv = head_dim`` and a
key width ``dk = head_dim · expand_k``; the layer's value width is ``V = h·dv`` and its key width
``K = h·dk``. With Edifice's defaults (``H = 256``, 4 heads of 64) and ``expand_k = 0.5`` this is
flash-linear-attention's GLA default (``expand_k = 0.5``, ``expand_v = 1``): ``K = H/2``, ``V = H``.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "feedforward_param_count",
    "gla_param_count",
    "key_head_dim",
    "param_count",
    "state_size",
]


def _positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an integer >= 1, got {value!r}")
    if value < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    return value


def key_head_dim(head_dim: int, expand_k: float = 0.5) -> int:
    """Key width per head ``dk = head_dim · expand_k``; it must be a whole number >= 1."""
    _positive_int("head_dim", head_dim)
    if isinstance(expand_k, bool) or not isinstance(expand_k, int | float):
        raise TypeError(f"expand_k must be a number > 0, got {expand_k!r}")
    width = head_dim * expand_k
    rounded = round(width)
    if not expand_k > 0 or rounded < 1 or abs(width - rounded) > 1e-9:
        raise ValueError(
            "head_dim · expand_k (the key width per head) must be a whole number >= 1, got "
            f"{head_dim} · {expand_k!r} = {width!r}"
        )
    return int(rounded)


def gla_param_count(
    hidden_size: int,
    *,
    num_heads: int = 4,
    head_dim: int = 64,
    expand_k: float = 0.5,
    gate_low_rank_dim: int = 16,
) -> int:
    """Exact parameter count of one :class:`GatedLinearAttention` body.

    With ``K = heads·dk``, ``V = heads·head_dim``, ``r = gate_low_rank_dim`` (no biases except
    the forget gate's second linear):

    - q and k projections ``H → K``: ``2·H·K``;
    - v projection and output-gate projection ``H → V``: ``2·H·V``;
    - low-rank forget gate ``H → r → K``: ``H·r + r·K + K``;
    - per-head RMSNorm weight shared by the heads: ``head_dim``;
    - output projection ``V → H``: ``V·H``.
    """
    _positive_int("hidden_size", hidden_size)
    _positive_int("num_heads", num_heads)
    _positive_int("gate_low_rank_dim", gate_low_rank_dim)
    keys = num_heads * key_head_dim(head_dim, expand_k)
    values = num_heads * head_dim
    r = gate_low_rank_dim
    return (
        2 * hidden_size * keys
        + 3 * hidden_size * values
        + hidden_size * r
        + r * keys
        + keys
        + head_dim
    )


def feedforward_param_count(hidden_size: int, expand_factor: int = 4) -> int:
    """Exact parameter count of the FFN body (``hybridzoo.nn.FeedForward``), torch-free."""
    inner = expand_factor * hidden_size
    return 2 * hidden_size * inner + inner + hidden_size


def param_count(
    hidden_size: int,
    *,
    num_heads: int = 4,
    head_dim: int = 64,
    expand_k: float = 0.5,
    gate_low_rank_dim: int = 16,
    gate_logit_normalizer: float = 16.0,
    norm_eps: float = 1e-5,
    chunk_size: int = 64,
    ffn_expand_factor: int = 4,
) -> int:
    """Exact parameter count of one gla layer: the GLA body plus its FFN body.

    Takes the same keywords as ``make_gla_bodies``; ``gate_logit_normalizer``, ``norm_eps`` and
    ``chunk_size`` do not change the count.
    """
    del gate_logit_normalizer, norm_eps, chunk_size  # no parameters depend on them
    return gla_param_count(
        hidden_size,
        num_heads=num_heads,
        head_dim=head_dim,
        expand_k=expand_k,
        gate_low_rank_dim=gate_low_rank_dim,
    ) + feedforward_param_count(hidden_size, ffn_expand_factor)


def state_size(
    hidden_size: int,
    *,
    num_heads: int = 4,
    head_dim: int = 64,
    expand_k: float = 0.5,
    gate_low_rank_dim: int = 16,
    gate_logit_normalizer: float = 16.0,
    norm_eps: float = 1e-5,
    chunk_size: int = 64,
    ffn_expand_factor: int = 4,
) -> int:
    """Floating-point values per batch row in the decoding state: ``heads · dk · head_dim``.

    The state is one ``[heads, dk, head_dim]`` matrix per row, whatever the sequence length; the
    FFN body is stateless. The other keywords are accepted for a uniform signature.
    """
    del hidden_size, gate_low_rank_dim, gate_logit_normalizer, norm_eps, chunk_size
    del ffn_expand_factor
    _positive_int("num_heads", num_heads)
    return num_heads * key_head_dim(head_dim, expand_k) * head_dim

"""What a layer's FLOPs formula returns (:class:`LayerFlops`), and helpers for writing one.

A layer declares ``LayerSpec.flops(options, hidden_size, seq_len) -> LayerFlops``: the forward
FLOPs of its bodies on one sequence of ``seq_len`` positions (without the core's norms), in two
parts, each an exact integer:

- ``matmul``: products with the layer's weight matrices (projections, experts, KAN splines), two
  FLOPs per multiply-add: ``2·n_in·n_out`` per position for each matrix a position uses. This is
  what ``torch.utils.flop_counter.FlopCounterMode`` counts for the matrix products whose operand
  is a weight (or a tensor made from weights only), whatever kernel runs the rest.
- ``mixer``: the sequence mixer's own work, in the layer's recurrent (step) form: attention's
  scores and weighted values over the keys each query sees (a function of ``seq_len`` and the
  window), a recurrence's state update and readout, a short convolution, a selective scan; two
  FLOPs per multiply-add, one per other arithmetic operation; exponentials, softmaxes, norms and
  activations are not counted (as Megatron-LM counts). Chunked parallel kernels compute the same
  recurrence with more (matrix) FLOPs that grow with their chunk length; the step form is the
  work the algorithm needs, and what a decoding step costs.

Training FLOPs are three times the forward (a backward costs about two forwards), as Megatron-LM
and most papers count them.
"""

from __future__ import annotations

import attrs

from hybridzoo.formulas import feedforward_param_count
from hybridzoo.validate import at_least

__all__ = ["LayerFlops", "causal_context", "feedforward_flops", "linear_flops"]


def _count(_instance: object, attribute: attrs.Attribute, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"LayerFlops.{attribute.name} must be an integer >= 0, got {value!r}")


@attrs.frozen
class LayerFlops:
    """Forward FLOPs of one layer on one sequence (see :mod:`hybridzoo.flops`)."""

    matmul: int = attrs.field(validator=_count)
    mixer: int = attrs.field(default=0, validator=_count)

    @property
    def total(self) -> int:
        """``matmul + mixer``."""
        return self.matmul + self.mixer

    def __add__(self, other: LayerFlops) -> LayerFlops:
        return LayerFlops(self.matmul + other.matmul, self.mixer + other.mixer)


def linear_flops(n_in: int, n_out: int) -> int:
    """FLOPs of one position through a weight matrix ``n_in → n_out``: ``2·n_in·n_out``."""
    return 2 * n_in * n_out


def feedforward_flops(
    hidden_size: int,
    expand_factor: int = 4,
    *,
    activation: str = "gelu",
    inner_size: int | None = None,
) -> int:
    """FLOPs of one position through :class:`hybridzoo.nn.FeedForward` (two per weight of its
    matrices: ``4·I·H``, ``6·I·H`` for SwiGLU; biases and the activation not counted)."""
    weights = feedforward_param_count(
        hidden_size, expand_factor, activation=activation, bias=False, inner_size=inner_size
    )
    return 2 * weights


def causal_context(seq_len: int, window: int | None = None) -> int:
    """Keys seen by all the queries of a causal attention over ``seq_len`` positions, each query
    seeing itself and the ``window - 1`` before it (``None``: every key before it): ``Σ_t
    min(t + 1, window)``, the triangle ``L(L+1)/2`` for full attention."""
    length = at_least(1).check("seq_len", seq_len)
    if window is None or window >= length:
        return length * (length + 1) // 2
    window = at_least(1).check("window", window)
    return window * (window + 1) // 2 + (length - window) * window

"""The transformer feed-forward body, ``down(act(up(x)))``, with the three activations of today's
models: exact GELU (the original transformer, Edifice), squared ReLU (Primer, Nemotron-H) and
SwiGLU (Llama, Mistral, Mixtral)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from hybridzoo.nn.positionwise import Positionwise
from hybridzoo.validate import at_least, boolean, one_of

__all__ = ["ACTIVATIONS", "FeedForward", "activate"]

#: The activations of :class:`FeedForward` (and of the experts of a mixture built on it).
ACTIVATIONS = ("gelu", "relu2", "swiglu")

#: Positions per block of an inference forward (see :meth:`FeedForward.forward`).
INFERENCE_BLOCK = 1024


def activate(h: torch.Tensor, activation: str) -> torch.Tensor:
    """The activation applied to the up projection ``h [..., n]``.

    - ``"gelu"``: exact (erf) GELU, ``[..., n] -> [..., n]``;
    - ``"relu2"``: ``relu(h)²``, ``[..., n] -> [..., n]``;
    - ``"swiglu"``: ``silu(gate) · up`` with ``gate, up`` the two halves of ``h`` (gate first),
      ``[..., 2·I] -> [..., I]``.
    """
    if activation == "gelu":
        return F.gelu(h)
    if activation == "relu2":
        return F.relu(h).square()
    if activation == "swiglu":
        gate, up = h.chunk(2, dim=-1)
        return F.silu(gate) * up
    raise ValueError(f"activation must be one of {ACTIVATIONS}, got {activation!r}")


class FeedForward(Positionwise):
    """``down(act(up(x)))`` at each position, inner width ``I``.

    Args:
        hidden_size: model width ``H``.
        expand_factor: ``I = expand_factor · H`` (Edifice: 4) unless ``inner_size`` is given.
        activation: ``"gelu"`` (exact, erf; the default), ``"relu2"`` (squared ReLU) or
            ``"swiglu"`` (``silu(gate) · up``: ``up`` is then one ``Linear(H, 2·I)`` whose first
            ``I`` outputs are the gate, as transformers' fused ``gate_up_proj``).
        bias: biases on both linears (default True, as Edifice; Llama-style models use False).
        inner_size: the inner width ``I`` itself (for widths that are no whole multiple of
            ``H``, e.g. converted checkpoints); ``None`` uses ``expand_factor``.

    Parameters: :func:`hybridzoo.formulas.feedforward_param_count`
    (``2·e·H² + e·H + H`` for the default GELU with biases).
    """

    def __init__(
        self,
        hidden_size: int,
        expand_factor: int = 4,
        *,
        activation: str = "gelu",
        bias: bool = True,
        inner_size: int | None = None,
    ) -> None:
        super().__init__()
        at_least(1).check("hidden_size", hidden_size)
        at_least(1).check("expand_factor", expand_factor)
        at_least(1, allow_none=True).check("inner_size", inner_size)
        one_of(*ACTIVATIONS).check("activation", activation)
        boolean.check("bias", bias)
        inner = expand_factor * hidden_size if inner_size is None else inner_size
        self.activation = activation
        self.inner_size = inner
        self.up = nn.Linear(hidden_size, 2 * inner if activation == "swiglu" else inner, bias=bias)
        self.down = nn.Linear(inner, hidden_size, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x [..., H] -> [..., H]``. Without autograd, long inputs run in blocks of
        :data:`INFERENCE_BLOCK` positions (the same products; the inner activations stay small
        and in cache)."""
        tracked = torch.is_grad_enabled() and (x.requires_grad or self.up.weight.requires_grad)
        flat = x.reshape(-1, x.shape[-1])
        if tracked or flat.shape[0] <= INFERENCE_BLOCK:
            return self.down(activate(self.up(x), self.activation))
        out = torch.empty_like(flat)
        for start in range(0, flat.shape[0], INFERENCE_BLOCK):
            block = flat[start : start + INFERENCE_BLOCK]
            out[start : start + INFERENCE_BLOCK] = self.down(
                activate(self.up(block), self.activation)
            )
        return out.view(x.shape)

    def extra_repr(self) -> str:
        return f"activation={self.activation!r}, inner_size={self.inner_size}"

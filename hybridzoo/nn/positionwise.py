"""Step mode for bodies that act on each position alone (no mixing along time).

A layer declared with ``Capabilities(positionwise=True)`` (a feed-forward, a KAN, a mixture of
experts) implements ``forward`` only: the core runs its step mode with the functions below (no
state: ``()``; a step is ``forward`` on a length-1 sequence; a prefill is ``forward``).
:class:`Positionwise` gives a body the same three methods, for a per-position sub-block of a
*stateful* layer (the FFN after a sequence mixer), whose bodies must all have them.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["Positionwise", "positionwise_prefill", "positionwise_step"]


def positionwise_step(
    body: nn.Module, x_t: torch.Tensor, state: tuple[()] = ()
) -> tuple[torch.Tensor, tuple[()]]:
    """One position through a per-position ``body``: ``x_t [B, H] -> (y_t [B, H], ())``."""
    return body(x_t.unsqueeze(1)).squeeze(1), ()


def positionwise_prefill(
    body: nn.Module, x: torch.Tensor, state: tuple[()] | None = None
) -> tuple[torch.Tensor, tuple[()]]:
    """A chunk through a per-position ``body``: ``x [B, L, H] -> (body(x), ())``."""
    return body(x), ()


class Positionwise(nn.Module):
    """Base for bodies that act on each position independently (FFN, KAN, ...).

    Such a body needs no recurrent state: ``init_state`` returns an empty tuple, ``step`` runs
    ``forward`` on a length-1 sequence and ``prefill`` is ``forward``. Subclasses implement
    ``forward(x: [B, L, H]) -> [B, L, H]`` only. (A layer that is positionwise as a whole needs
    no base class: declare ``Capabilities(positionwise=True)``.)
    """

    def init_state(self, batch_size: int) -> tuple[()]:
        return ()

    def step(self, x_t: torch.Tensor, state: tuple[()]) -> tuple[torch.Tensor, tuple[()]]:
        return positionwise_step(self, x_t, state)

    def prefill(
        self, x: torch.Tensor, state: tuple[()] | None = None
    ) -> tuple[torch.Tensor, tuple[()]]:
        return positionwise_prefill(self, x, state)

"""The ``ffn`` layer's body: :class:`hybridzoo.nn.FeedForward` (shared with the FFN sub-blocks of
attention and GLA)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from torch import nn

from hybridzoo.nn import FeedForward
from hybridzoo.plugin import option_kwargs

if TYPE_CHECKING:  # pragma: no cover
    from hybridzoo_plugins.ffn import FFNOptions


def make_bodies(o: FFNOptions, hidden_size: int) -> list[nn.Module]:
    """One :class:`~hybridzoo.nn.FeedForward` body."""
    return [FeedForward(hidden_size, **option_kwargs(o))]

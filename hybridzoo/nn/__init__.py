"""Small building blocks shared by several layer plugins (no layer is defined here).

Everything here follows the *body protocol* that the core expects of what a plugin's factory
returns (see :mod:`hybridzoo.spec`):

- ``forward(x: [B, L, H]) -> [B, L, H]``
- ``init_state(batch_size) -> state`` (a tuple of tensors, possibly empty)
- ``step(x_t: [B, H], state) -> (y_t: [B, H], state)``
- ``prefill(x: [B, L, H], state=None) -> (y: [B, L, H], state)``
"""

from hybridzoo.nn.feedforward import FeedForward
from hybridzoo.nn.positionwise import Positionwise

__all__ = ["FeedForward", "Positionwise"]

"""A base for recurrent bodies: ``forward`` and ``prefill`` from one sequence-mode method."""

from __future__ import annotations

from torch import Tensor, nn

__all__ = ["SequenceMixer"]

State = tuple[Tensor, ...]


class SequenceMixer(nn.Module):
    """Subclasses implement :meth:`_mix` (and ``init_state``/``step``); ``forward`` and
    ``prefill`` follow, both taking the packing argument ``seq_idx``."""

    def _mix(
        self, x: Tensor, state: State | None, want_state: bool, seq_idx: Tensor | None
    ) -> tuple[Tensor, State | None]:
        """``(y [B, L, H], the final state when want_state else None)`` from ``state`` (None:
        zeros), without modifying it."""
        raise NotImplementedError

    def forward(self, x: Tensor, *, seq_idx: Tensor | None = None) -> Tensor:
        """``x [B, L, H] -> [B, L, H]`` from a zero state; ``seq_idx``: see :meth:`prefill`."""
        return self._mix(x, None, False, seq_idx)[0]

    def prefill(
        self, x: Tensor, state: State | None = None, *, seq_idx: Tensor | None = None
    ) -> tuple[Tensor, State]:
        """``(y [B, L, H], the state after the last position)`` from ``state`` (None: zeros);
        the given state is not modified.

        ``seq_idx [B, L]`` (integers, non-decreasing along L) packs several documents in a row:
        at each change the state restarts from zero, as if each document ran on its own; the
        given state belongs to a row's first document, the returned one to its last.
        """
        y, new_state = self._mix(x, state, True, seq_idx)
        if new_state is None:  # pragma: no cover - a subclass bug
            raise RuntimeError(f"{type(self).__name__}._mix returned no state")
        return y, new_state

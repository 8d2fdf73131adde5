"""Tensors derived from parameters for step mode (a fused weight, ``-exp(A_log)``), computed once
and reused while the parameters stay the same: one token at a time, recomputing them would cost
more than the token's own maths."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor

__all__ = ["DerivedTensors"]


class DerivedTensors:
    """A cache of tensors computed from parameters, keyed by name.

    :meth:`get` recomputes an entry when one of its parameters has a new version (an optimizer
    step, ``load_state_dict`` and other in-place updates bump it), storage, dtype or device
    (``module.to(...)``). Writes through ``param.data`` bypass the version counter: call
    :meth:`clear` after those. While autograd records (a parameter requires grad and grad mode
    is on) nothing is cached, so gradients flow as usual.
    """

    def __init__(self) -> None:
        self._entries: dict[str, tuple[tuple, Tensor]] = {}

    def get(self, name: str, params: Sequence[Tensor], make: Callable[[], Tensor]) -> Tensor:
        """``make()``, cached under ``name`` for as long as ``params`` are unchanged."""
        if torch.is_grad_enabled() and any(p.requires_grad for p in params):
            return make()
        key = tuple((p._version, p.data_ptr(), p.dtype, p.device) for p in params)
        hit = self._entries.get(name)
        if hit is None or hit[0] != key:
            with torch.inference_mode(False), torch.no_grad():  # a normal, reusable tensor
                hit = self._entries[name] = (key, make())
        return hit[1]

    def clear(self) -> None:
        """Forget every entry."""
        self._entries.clear()

"""The loop shared by the family's time-step references (tests only): checks, the compute dtype,
document starts (the state zeroed before a document's first step), one step per position.

Each reference (``<kernel>/naive.py``) is a step that reads like the paper,
``step(state, *inputs_t) -> (state, o_t)``, run here over the sequence.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from hybridzoo.ops._checks import LAYOUTS, sizes
from hybridzoo.ops._common import compute_dtype, document_starts

Step = Callable[..., tuple[torch.Tensor, torch.Tensor]]


def run_steps(
    kernel: str,
    step: Step,
    tensors: Sequence[torch.Tensor | None],
    state_shape: Callable[[dict[str, int]], tuple[int, ...]],
    *,
    initial_state: torch.Tensor | None = None,
    output_final_state: bool = False,
    seq_idx: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``(o [B, T, ...], final state or None)`` of ``step`` over time. ``tensors`` are the
    kernel's positional tensors (:data:`~hybridzoo.ops._checks.LAYOUTS` order, the state left
    out); those with a T axis are given to ``step`` position by position, in the compute dtype,
    the others whole."""
    n = sizes(kernel, *tensors, initial_state)
    dt = compute_dtype(tensors[0].dtype)
    starts = document_starts(seq_idx, n["B"], n["T"])
    state = tensors[0].new_zeros(state_shape(n), dtype=dt)
    if initial_state is not None:
        state = initial_state.to(dt)
    layouts = [layout.split() for _, layout in LAYOUTS[kernel][: len(tensors)]]
    fixed = [None if x is None else x.to(dt) for x in tensors]
    timed = [x.unbind(1) if "T" in lay else None for x, lay in zip(fixed, layouts, strict=True)]
    outputs = []
    for t in range(n["T"]):
        if starts is not None:
            state = torch.where(starts[:, t, None, None, None], 0.0, state)
        args = [f if s is None else s[t] for s, f in zip(timed, fixed, strict=True)]
        state, o_t = step(state, *args)
        outputs.append(o_t)
    out_dtype = next(x for x in tensors if x is not None and x.dim() == 4).dtype
    o = torch.stack(outputs, dim=1).to(out_dtype)
    return o, (state if output_final_state else None)

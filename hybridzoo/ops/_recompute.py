"""Run a chunked recurrence group of chunks by group of chunks, keeping only the states between
groups for the backward pass, which recomputes each group (reverse order) under autograd.

A kernel supplies ``run(inputs, state) -> (out, state_end)`` for one group: ``inputs`` are its
``[B, t, ...]`` time slices (``t`` a multiple of the chunk, except in the last group), ``state``
the recurrent state entering it. Memory then stays at the inputs, the states between groups and
one group's intermediate tensors (scores, decay matrices), instead of growing with ``T × chunk``
as plain autograd through the whole sequence would.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch

GROUP_ELEMENTS = 1 << 19
"""A group holds about this many elements per ``[chunks, B, H, C, max(D, C)]`` tensor (at least
one chunk): a bounded working set that stays in cache. It changes no result."""

GroupFn = Callable[[Sequence[torch.Tensor], torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


def group_bounds(t_len: int, chunk: int, per_chunk: int) -> list[tuple[int, int]]:
    """``(t0, t1)`` time ranges of the groups: whole chunks of ``chunk`` positions, about
    :data:`GROUP_ELEMENTS` / ``per_chunk`` chunks each."""
    chunks = max(1, GROUP_ELEMENTS // max(per_chunk, 1))
    step = chunks * chunk
    return [(t0, min(t0 + step, t_len)) for t0 in range(0, t_len, step)]


def run_groups(
    run: GroupFn,
    bounds: list[tuple[int, int]],
    state: torch.Tensor,
    inputs: Sequence[torch.Tensor],
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(out [B, T, ...], final state)`` of ``run`` over the groups, differentiable in
    ``state`` and every input through a recomputing backward."""
    return _GroupCheckpoint.apply(run, bounds, state, *inputs)


def _slices(inputs: Sequence[torch.Tensor], t0: int, t1: int) -> list[torch.Tensor]:
    return [x[:, t0:t1] for x in inputs]


class _GroupCheckpoint(torch.autograd.Function):
    @staticmethod
    def forward(
        ctx: Any, run: GroupFn, bounds: list[tuple[int, int]], state: torch.Tensor, *inputs: Any
    ) -> tuple[torch.Tensor, torch.Tensor]:
        entering = []
        outs = []
        for t0, t1 in bounds:
            entering.append(state)
            out, state = run(_slices(inputs, t0, t1), state)
            outs.append(out)
        ctx.run, ctx.bounds = run, bounds
        ctx.save_for_backward(*inputs, *entering)
        ctx.n_inputs = len(inputs)
        return torch.cat(outs, 1), state

    @staticmethod
    def backward(ctx: Any, d_out: torch.Tensor, d_state: torch.Tensor | None) -> tuple[Any, ...]:
        saved = ctx.saved_tensors
        inputs, entering = saved[: ctx.n_inputs], saved[ctx.n_inputs :]
        wanted = ctx.needs_input_grad[3:]
        grads = [torch.zeros_like(x) if w else None for x, w in zip(inputs, wanted, strict=True)]
        carry = d_state
        for (t0, t1), s0 in zip(reversed(ctx.bounds), reversed(entering), strict=True):
            with torch.enable_grad():
                parts = [
                    x.detach().requires_grad_(w)
                    for x, w in zip(_slices(inputs, t0, t1), wanted, strict=True)
                ]
                s = s0.detach().requires_grad_(True)
                out, s_end = ctx.run(parts, s)
                leaves = [p for p in parts if p.requires_grad] + [s]
                roots, seeds = [out], [d_out[:, t0:t1]]
                if carry is not None:
                    roots.append(s_end)
                    seeds.append(carry)
                got = torch.autograd.grad(roots, leaves, seeds, allow_unused=True)
            it = iter(got)
            for g_full, p in zip(grads, parts, strict=True):
                if p.requires_grad:
                    g = next(it)
                    if g is not None:
                        g_full[:, t0:t1] = g
            carry = next(it)
            if carry is None:
                carry = torch.zeros_like(s0)
        return None, None, carry if ctx.needs_input_grad[2] else None, *grads

"""The chunked linear-recurrence kernels, described once for the shared property tests: how to
draw their arguments, and their chunked, reference and one-token forms."""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from dataclasses import dataclass

import torch
from hypothesis import strategies as st

from hybridzoo import ops
from hybridzoo.ops.delta_rule.naive import naive_gated_delta_rule
from hybridzoo.ops.gla.naive import naive_gla
from hybridzoo.ops.ssd.naive import naive_ssd


@dataclass(frozen=True)
class Dims:
    b: int
    t: int
    h: int  # value heads
    g: int  # query/key groups (divides h)
    d_k: int
    d_v: int


@dataclass
class Problem:
    """Positional tensors (``timed[i]``: has a T axis), keyword arguments, initial state."""

    kernel: Kernel
    args: list[torch.Tensor]
    kwargs: dict
    initial_state: torch.Tensor | None

    def leaves(self) -> list[torch.Tensor]:
        extra = [v for v in self.kwargs.values() if isinstance(v, torch.Tensor)]
        state = [] if self.initial_state is None else [self.initial_state]
        return [*self.args, *extra, *state]

    def call(self, fn: Callable, args: list[torch.Tensor] | None = None, **kw):
        return fn(*(self.args if args is None else args), **self.kwargs, **kw)

    def chunk(self, **kw):
        kw.setdefault("initial_state", self.initial_state)
        return self.call(self.kernel.chunk, output_final_state=True, **kw)

    def naive(self, **kw):
        kw.setdefault("initial_state", self.initial_state)
        return self.call(self.kernel.naive, output_final_state=True, **kw)

    def at(self, t: int) -> list[torch.Tensor]:
        """The positional tensors at time t (the one-token step's arguments)."""
        return [
            x[:, t] if timed else x for x, timed in zip(self.args, self.kernel.timed, strict=True)
        ]

    def rows(self, b0: int, b1: int, t0: int, t1: int) -> list[torch.Tensor]:
        """The positional tensors restricted to rows b0:b1 and times t0:t1."""
        return [
            x[b0:b1, t0:t1] if timed else x
            for x, timed in zip(self.args, self.kernel.timed, strict=True)
        ]


@dataclass(frozen=True)
class Kernel:
    name: str
    chunk: Callable
    naive: Callable
    step: Callable
    make: Callable  # (randn, rand, dims, strength, options) -> (args, kwargs)
    timed: tuple[bool, ...]
    state_shape: Callable[[Dims], tuple[int, ...]]
    decay_arg: int  # the positional argument that controls the decay

    def problem(
        self,
        dims: Dims,
        dtype: torch.dtype,
        seed: int,
        strength: float,
        with_state: bool,
        options: dict,
    ) -> Problem:
        gen = torch.Generator().manual_seed(seed)

        def randn(*shape: int) -> torch.Tensor:
            return torch.randn(*shape, generator=gen, dtype=torch.float64).to(dtype)

        def rand(*shape: int) -> torch.Tensor:
            return torch.rand(*shape, generator=gen, dtype=torch.float64).to(dtype)

        args, kwargs = self.make(randn, rand, dims, strength, options)
        state = randn(*self.state_shape(dims)) if with_state else None
        return Problem(self, args, kwargs, state)


def _gla(per_head: bool):
    """chunk_gla's arguments with a decay per key channel or (``per_head``) one per head."""

    def make(randn, rand, d: Dims, strength: float, o: dict):
        qk = [randn(d.b, d.t, d.g, d.d_k), randn(d.b, d.t, d.g, d.d_k)]
        decay = (d.b, d.t, d.h) + (() if per_head else (d.d_k,))
        args = [*qk, randn(d.b, d.t, d.h, d.d_v), -rand(*decay) * strength]
        return args, {"scale": o["scale"], "bonus": randn(d.h, d.d_k) if o["bonus"] else None}

    return make


def _ssd(randn, rand, d: Dims, strength: float, o: dict):
    dt = rand(d.b, d.t, d.h) * strength**0.5 + 0.01
    a = -(rand(d.h) + 0.1) * strength**0.5
    x, b, c = randn(d.b, d.t, d.h, d.d_v), randn(d.b, d.t, d.g, d.d_k), randn(d.b, d.t, d.g, d.d_k)
    return [x, dt, a, b, c], {}


def _delta(randn, rand, d: Dims, strength: float, o: dict):
    k = torch.nn.functional.normalize(randn(d.b, d.t, d.g, d.d_k), dim=-1)
    args = [randn(d.b, d.t, d.g, d.d_k), k, randn(d.b, d.t, d.h, d.d_v)]
    return [*args, -rand(d.b, d.t, d.h) * strength, rand(d.b, d.t, d.h)], {"scale": o["scale"]}


def _step_gla(args_t, state, kwargs):
    return ops.gla_step(*args_t, state, **kwargs)


def _step_ssd(args_t, state, kwargs):
    return ops.ssd_step(*args_t, state)


def _step_delta(args_t, state, kwargs):
    return ops.gated_delta_rule_step(*args_t, state, **kwargs)


def _kernels() -> dict[str, Kernel]:
    base = {
        "gla": Kernel(
            "gla",
            ops.chunk_gla,
            naive_gla,
            _step_gla,
            _gla(False),
            (True,) * 4,
            lambda d: (d.b, d.h, d.d_k, d.d_v),
            3,
        ),
        "ssd": Kernel(
            "ssd",
            ops.chunk_ssd,
            naive_ssd,
            _step_ssd,
            _ssd,
            (True, True, False, True, True),
            lambda d: (d.b, d.h, d.d_v, d.d_k),
            1,
        ),
        "delta": Kernel(
            "delta",
            ops.chunk_gated_delta_rule,
            naive_gated_delta_rule,
            _step_delta,
            _delta,
            (True,) * 5,
            lambda d: (d.b, d.h, d.d_k, d.d_v),
            3,
        ),
    }
    # chunk_gla with a [B, T, H] decay: its scalar form, a chunked path of its own
    base["simple_gla"] = dataclasses.replace(base["gla"], name="simple_gla", make=_gla(True))
    out = {}
    for name, kernel in base.items():
        for backend in ("compiled", "torch"):  # every kernel has both backends
            chunk = functools.partial(kernel.chunk, backend=backend)
            out[f"{name}-{backend}"] = dataclasses.replace(kernel, chunk=chunk)
    return out


KERNELS = _kernels()


@st.composite
def dims(draw: st.DrawFn, max_t: int = 70) -> Dims:
    g = draw(st.integers(1, 2))
    return Dims(
        b=draw(st.integers(1, 2)),
        t=draw(st.integers(1, max_t)),
        h=g * draw(st.integers(1, 2)),
        g=g,
        d_k=draw(st.integers(1, 5)),
        d_v=draw(st.integers(1, 5)),
    )


@st.composite
def problems(draw: st.DrawFn, kernel: Kernel, dtype=torch.float64, max_t: int = 70) -> Problem:
    """Random small problems: T from 1, weak to strong decays, optional state and options."""
    d = draw(dims(max_t))
    options = {"scale": draw(st.sampled_from([None, 1.0, 0.3])), "bonus": draw(st.booleans())}
    return kernel.problem(
        d,
        dtype,
        seed=draw(st.integers(0, 2**31 - 1)),
        strength=draw(st.sampled_from([0.05, 1.0, 30.0])),
        with_state=draw(st.booleans()),
        options=options,
    )


def seq_idx_for(draw: st.DrawFn, b: int, t: int) -> torch.Tensor:
    """Random document boundaries (documents of length 1 included), as ``seq_idx [B, T]``."""
    rows = []
    for _ in range(b):
        flags = draw(st.lists(st.booleans(), min_size=t - 1, max_size=t - 1))
        rows.append([0, *(int(f) for f in flags)])
    return torch.tensor(rows, dtype=torch.int64).cumsum(1)


def spike(problem: Problem, positions: list[tuple[int, int]], value: float) -> None:
    """Set the decay argument to ``value`` (a huge or infinite log-decay magnitude) at the given
    ``(row, time)`` positions (SSD: through ``dt``)."""
    x = problem.args[problem.kernel.decay_arg]
    for b, t in positions:
        x[b, t] = value if problem.kernel.name != "ssd" else -value

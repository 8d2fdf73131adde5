"""Contract ``shapes``: ``[B, L, H] -> [B, L, H]`` for any B and L, dtype and device kept, and the
layer works inside a model."""

from __future__ import annotations

import torch

from hybridzoo.counting import param_count as model_param_count
from hybridzoo.registry import use_registry
from hybridzoo.testing.case import (
    LayerCase,
    build_model,
    dtype_name,
    model_config,
    private_registry,
)
from hybridzoo.testing.catalog import register
from hybridzoo.testing.compare import finite, state_tensors, tensor
from hybridzoo.testing.protocol import forward, named, step_pair
from hybridzoo.testing.results import CheckFailure

# pytest hides the kit's own frames from tracebacks: the author sees the failure first
__tracebackhide__ = True


@register("shape", "shapes")
def check_shape(case: LayerCase) -> None:
    """Each body maps ``[B, L, H]`` to ``[B, L, H]`` with finite values, for the case's (B, L)
    and for B=1/L=1, B+1/L=2 and B=1/L+5 (a single position and odd lengths included)."""
    bodies = case.bodies()
    shapes = dict.fromkeys(
        [(case.batch, case.length), (1, 1), (case.batch + 1, 2), (1, case.length + 5)]
    )
    for name, body in named(bodies):
        for n, (batch, length) in enumerate(shapes):
            x = case.inputs(batch, length, offset=n)
            with torch.no_grad():
                y = forward(body, x, f"{name} on B={batch}, L={length}")
            finite(y, f"{name} on B={batch}, L={length}")


def _same_place(out: torch.Tensor, dtype: torch.dtype, like: torch.Tensor, what: str) -> None:
    if out.dtype != dtype or out.device != like.device:
        raise CheckFailure(
            f"{what} returned {out.dtype} on {out.device}, expected {dtype} on {like.device}"
        )


def _check_state_placement(body, x: torch.Tensor, dtype: torch.dtype, name: str, batch: int):
    state = body.init_state(batch)
    for j, t in enumerate(state_tensors(state, f"{name}: init_state")):
        if t.device != x.device:
            raise CheckFailure(
                f"{name}: init_state tensor {j} is on {t.device}, the module on {x.device}"
            )
        if t.is_floating_point() and t.dtype != dtype:
            raise CheckFailure(
                f"{name}: init_state tensor {j} {list(t.shape)} is {t.dtype}, the module {dtype}"
            )
    y_t, _ = step_pair(body.step(x[:, 0], state), f"{name}: step")
    y_p, _ = step_pair(body.prefill(x, None), f"{name}: prefill")
    for what, out in (("step", y_t), ("prefill", y_p)):
        _same_place(tensor(out, f"{name}: {what} output"), dtype, x, f"{name}: {what}")


@register("dtype_device", "shapes")
def check_dtype_device(case: LayerCase) -> None:
    """In float32 and float64, forward returns the input's dtype and device; a stateful layer's
    ``init_state`` puts its tensors on the module's device, floating ones in its dtype, and
    ``step``/``prefill`` return outputs of that dtype."""
    for dtype in (torch.float32, torch.float64):
        bodies = case.bodies(dtype=dtype)
        x = case.inputs().to(dtype)
        for label_, body in named(bodies):
            name = f"{label_} in {dtype_name(dtype)}"
            with torch.no_grad():
                _same_place(forward(body, x, name), dtype, x, f"{name}: forward")
                if case.spec.capabilities.stateful:
                    _check_state_placement(body, x, dtype, name, case.batch)


@register("in_model", "shapes")
def check_in_model(case: LayerCase) -> None:
    """Two blocks of the layer in a :class:`HybridModel` (embed_dim = H+1, so with an input
    projection): ``output="sequence"`` gives ``[B, L, H]``, ``output="last"`` gives ``[B, H]``, and
    ``hybridzoo.param_count`` equals the built model's parameters."""
    registry = private_registry(case.spec)
    x = case.randn(case.batch, case.length, case.hidden_size + 1)
    with use_registry(registry):
        for output, shape in (
            ("sequence", [case.batch, case.length, case.hidden_size]),
            ("last", [case.batch, case.hidden_size]),
        ):
            config = model_config(case, registry, output=output)
            model = build_model(config, case, registry)
            with torch.no_grad():
                y = model(x)
            if list(y.shape) != shape:
                raise CheckFailure(
                    f"a model of two {case.name!r} blocks with output={output!r} maps "
                    f"{list(x.shape)} to {list(y.shape)}, expected {shape}"
                )
            finite(y, f"model output ({output})")
            counted, built = model_param_count(config), model.param_count()
            if counted != built:
                raise CheckFailure(
                    f"hybridzoo.param_count gives {counted} for a model of two {case.name!r} "
                    f"blocks, the built model has {built} parameters"
                )

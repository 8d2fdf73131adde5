"""Checks shared by the tests of the recurrent layers with a time-step reference (mamba2,
gated_deltanet): the fast body against its reference, step and prefill against the forward,
gradients, and the same weights in transformers."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping

import pytest
import torch
from torch import Tensor, nn

F64 = torch.float64
TOL64 = {"rtol": 1e-9, "atol": 1e-10}
#: transformers' torch paths run their recurrences in float32
TOL32 = {"rtol": 2e-4, "atol": 2e-5}

State = tuple[Tensor, ...]
ReferenceScan = Callable[[nn.Module, Tensor, State | None], tuple[Tensor, State]]


def randn(*shape: int, seed: int = 0, dtype: torch.dtype = F64) -> Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


@torch.no_grad()
def scramble(module: nn.Module, seed: int = 1) -> nn.Module:
    """Redraw every parameter at O(1) scale (matrices divided by √fan-in), time steps
    ``softplus(dt_bias)`` in [0.05, 1] and decay rates ``exp(A_log)`` in [0.3, 3], so that
    decays, gates and norms all matter."""
    gen = torch.Generator().manual_seed(seed)
    for name, p in module.named_parameters():
        noise = torch.randn(p.shape, generator=gen, dtype=torch.float64)
        if p.ndim >= 2:
            noise /= p[0].numel() ** 0.5
        if name == "dt_bias":
            dt = torch.empty(p.shape, dtype=torch.float64).uniform_(0.05, 1.0, generator=gen)
            noise = dt + torch.log(-torch.expm1(-dt))
        elif name == "A_log":
            noise = torch.empty(p.shape, dtype=torch.float64).uniform_(-1.2, 1.1, generator=gen)
        p.copy_(noise)
    return module


def transformers_module(cls: Callable[..., nn.Module], config: object) -> nn.Module:
    """transformers' ``cls(config, layer_idx=0)``, built from seed 0, then :func:`scramble`-d."""
    torch.manual_seed(0)
    return scramble(cls(config, layer_idx=0))


def transformers_cases(configs: list[dict]) -> Callable[[Callable], Callable]:
    """A test against transformers run once per config of ``configs`` (its ``config``
    argument), transformers' warnings ignored."""

    def mark(test: Callable) -> Callable:
        test = pytest.mark.parametrize("config", configs)(test)
        return pytest.mark.filterwarnings("ignore")(test)

    return mark


def assert_states_close(actual: State, expected: State, **tol: float) -> None:
    assert len(actual) == len(expected)
    for i, (a, e) in enumerate(zip(actual, expected, strict=True)):
        assert a.shape == e.shape, f"state tensor {i}: {tuple(a.shape)} != {tuple(e.shape)}"
        torch.testing.assert_close(a, e, **(tol or TOL64), msg=lambda m, i=i: f"state {i}: {m}")


def check_against_reference(
    layer: nn.Module, reference: ReferenceScan, x: Tensor, state: State | None = None
) -> None:
    """``prefill`` (and ``forward`` from zeros) equal the reference, outputs and final states;
    the given state is left as it was."""
    before = None if state is None else [t.clone() for t in state]
    with torch.no_grad():
        y, final = layer.prefill(x, state)
        y_ref, final_ref = reference(layer, x, state)
        torch.testing.assert_close(y, y_ref, **TOL64)
        assert_states_close(final, final_ref)
        if state is None:
            torch.testing.assert_close(layer(x), y_ref, **TOL64)
        else:
            assert_states_close(state, tuple(before))  # type: ignore[arg-type]


def steps(layer: nn.Module, x: Tensor, state: State) -> tuple[Tensor, State]:
    """Step ``layer`` over ``x [B, L, H]``; checks that the state is updated in place."""
    addresses = [t.data_ptr() for t in state]
    ys = []
    with torch.no_grad():
        for x_t in x.unbind(1):
            y_t, state = layer.step(x_t, state)
            ys.append(y_t)
    assert [t.data_ptr() for t in state] == addresses, "step must update the state in place"
    return torch.stack(ys, 1), state


def check_modes_agree(layer: nn.Module, x: Tensor, cut: int) -> None:
    """Steps from ``init_state``, and a prefill of ``cut`` positions, a prefill of one more and
    then steps, all equal the forward (outputs) and the prefill of everything (final state)."""
    batch = x.shape[0]
    with torch.no_grad():
        y, final = layer.prefill(x)
        y_steps, state = steps(layer, x, layer.init_state(batch))
        torch.testing.assert_close(y_steps, y, **TOL64)
        assert_states_close(state, final)
        y_1, state = layer.prefill(x[:, :cut])
        y_2, state = layer.prefill(x[:, cut : cut + 1], state)
        y_3, state = steps(layer, x[:, cut + 1 :], state)
    torch.testing.assert_close(torch.cat([y_1, y_2, y_3], 1), y, **TOL64)
    assert_states_close(state, final)


def check_gradients(layer: nn.Module, reference: ReferenceScan, x: Tensor) -> None:
    """Input and parameter gradients of the fast body equal the reference's; every parameter
    gets a nonzero one."""
    x = x.clone().requires_grad_(True)
    w = randn(*x.shape, seed=99, dtype=x.dtype)
    params = [x, *layer.parameters()]
    grads = torch.autograd.grad((layer(x) * w).sum(), params)
    grads_ref = torch.autograd.grad((reference(layer, x, None)[0] * w).sum(), params)
    names = ["input", *(n for n, _ in layer.named_parameters())]
    for name, g, g_ref in zip(names, grads, grads_ref, strict=True):
        assert g.abs().sum() > 0, f"no gradient reaches {name}"
        torch.testing.assert_close(g, g_ref, **TOL64, msg=lambda m, n=name: f"{n}: {m}")


def check_same_as_transformers(
    ours: nn.Module,
    theirs: nn.Module,
    x: Tensor,
    our_grads_as_theirs: Callable[[dict[str, Tensor]], Mapping[str, Tensor]],
) -> None:
    """The same weights give the same outputs, input gradients and parameter gradients (mapped
    onto transformers' names by ``our_grads_as_theirs``) in float32."""
    x_ours, x_theirs = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    w = randn(*x.shape, seed=98, dtype=x.dtype)
    y_ours, y_theirs = ours(x_ours), theirs(x_theirs)
    torch.testing.assert_close(y_ours, y_theirs, **TOL32)
    (y_ours * w).sum().backward()
    (y_theirs * w).sum().backward()
    torch.testing.assert_close(x_ours.grad, x_theirs.grad, **TOL32)
    mapped = our_grads_as_theirs({n: p.grad for n, p in ours.named_parameters()})
    expected = {n: p.grad for n, p in theirs.named_parameters()}
    assert sorted(mapped) == sorted(expected)
    for name, g in expected.items():
        torch.testing.assert_close(mapped[name], g, **TOL32, msg=lambda m, n=name: f"{n}: {m}")


def check_chunk_size_invariance(make: Callable[[int], nn.Module], x: Tensor) -> None:
    """``make(chunk_size)`` gives the same outputs for every chunk size (float64)."""
    outputs = [make(c)(x) for c in (1, 4, 16, 64)]
    for y in outputs[1:]:
        torch.testing.assert_close(y, outputs[0], rtol=1e-12, atol=1e-12)


def check_float32(body: nn.Module, x: Tensor) -> None:
    """A float32 body keeps float32 (outputs and states) and agrees with its float64 twin."""
    with torch.no_grad():
        y, state = body.prefill(x)
        y64 = body.double()(x.double())
    assert y.dtype == torch.float32 and all(t.dtype == torch.float32 for t in state)
    torch.testing.assert_close(y.double(), y64, rtol=1e-4, atol=1e-5)


def check_bfloat16(body: nn.Module, x: Tensor) -> None:
    """In bfloat16 (the kernels compute in float32) forward, backward and a step run, keep the
    dtype and stay within bfloat16's rounding of the float32 result."""
    with torch.no_grad():
        expected = body(x)
    body = body.bfloat16()
    xb = x.bfloat16().requires_grad_(True)
    y = body(xb)
    y.float().square().sum().backward()
    assert y.dtype == torch.bfloat16 and xb.grad is not None and torch.isfinite(xb.grad).all()
    torch.testing.assert_close(y.float(), expected, rtol=0.05, atol=0.05 * expected.abs().max())
    with torch.no_grad():
        y_t, _ = body.step(xb[:, 0].detach(), body.init_state(x.shape[0]))
    assert y_t.dtype == torch.bfloat16


def check_counts(make_bodies: Callable, formulas: object, options: object, hidden: int) -> None:
    """``formulas.param_count`` and ``formulas.state_size`` equal the built body's numbers."""
    body = make_bodies(options, hidden)
    params = sum(p.numel() for p in body.parameters())
    assert formulas.param_count(options, hidden) == params  # type: ignore[attr-defined]
    state = sum(t[0].numel() for t in body.init_state(1))
    assert formulas.state_size(options, hidden) == state  # type: ignore[attr-defined]


def float32_conformance(layer: str) -> Callable[..., None]:
    """A test running every check of the conformance kit on ``layer`` in float32 (the kit's
    float32 tolerances; tests/test_conformance.py runs them in float64)."""
    from hybridzoo.testing import parametrize_with_checks

    @parametrize_with_checks(layer, dtype=torch.float32)
    def test_conformance_kit_in_float32(check: Callable[[], None]) -> None:
        check()

    return test_conformance_kit_in_float32


def check_step_sees_parameter_updates(layer: nn.Module, other: nn.Module, x: Tensor) -> None:
    """Step mode caches tensors derived from the weights; an in-place update (as an optimizer
    makes) and ``load_state_dict`` must both reach the next steps."""
    updates = (
        lambda: [p.add_(0.1) for p in layer.parameters()],
        lambda: layer.load_state_dict(other.state_dict()),
    )
    with torch.no_grad():
        for update in updates:
            steps(layer, x[:, :2], layer.init_state(x.shape[0]))  # fills the caches
            update()
            y, _ = steps(layer, x, layer.init_state(x.shape[0]))
            torch.testing.assert_close(y, layer(x), **TOL64)


def documents(seq_idx: Tensor) -> list[list[tuple[int, int]]]:
    """Per row, the ``(start, end)`` of each packed document."""
    out = []
    for row in seq_idx.tolist():
        cuts = [0, *(t for t in range(1, len(row)) if row[t] != row[t - 1]), len(row)]
        out.append(list(itertools.pairwise(cuts)))
    return out


def check_packing(
    layer: nn.Module, reference: ReferenceScan, x: Tensor, seq_idx: Tensor, state: State
) -> None:
    """A packed prefill (``seq_idx``) equals prefills of each document on its own, the given
    state seen by a row's first document only: outputs, final states (the last document's) and
    the gradients of the input, of the state and of every parameter; and equals the reference
    run packed."""
    inputs = [x.clone().requires_grad_(True), *(t.clone().requires_grad_(True) for t in state)]
    params = list(layer.parameters())
    w = randn(*x.shape, seed=97, dtype=x.dtype)
    y, final = layer.prefill(inputs[0], tuple(inputs[1:]), seq_idx=seq_idx)
    y_ref, final_ref = reference(layer, x, state, seq_idx)
    torch.testing.assert_close(y, y_ref, **TOL64)
    assert_states_close(final, final_ref)
    grads = torch.autograd.grad((y * w).sum(), inputs + params)

    parts, finals, loss = [], [], 0.0
    spans = documents(seq_idx)
    for b, docs in enumerate(spans):
        for i, (start, end) in enumerate(docs):
            first = tuple(t[b : b + 1] for t in inputs[1:]) if i == 0 else None
            y_doc, s_doc = layer.prefill(inputs[0][b : b + 1, start:end], first)
            parts.append(y_doc)
            loss = loss + (y_doc * w[b : b + 1, start:end]).sum()
        finals.append(s_doc)
    lengths = [end - start for docs in spans for start, end in docs]
    separate = torch.cat(parts, dim=1).view(-1, x.shape[-1])
    torch.testing.assert_close(y.reshape(-1, x.shape[-1]), separate, **TOL64)
    assert sum(lengths) == x.shape[0] * x.shape[1]
    assert_states_close(final, tuple(torch.cat(ts) for ts in zip(*finals, strict=True)))
    grads_separate = torch.autograd.grad(loss, inputs + params, allow_unused=True)
    for i, (g, g_sep) in enumerate(zip(grads, grads_separate, strict=True)):
        expected = torch.zeros_like(g) if g_sep is None else g_sep
        torch.testing.assert_close(g, expected, **TOL64, msg=lambda m, i=i: f"gradient {i}: {m}")


#: the fields a transformers hybrid config needs besides the layer under test (its attention
#: and vocabulary, unused by a lone mixer), kept tiny
UNUSED_CONFIG = {
    "num_hidden_layers": 1,
    "num_attention_heads": 2,
    "num_key_value_heads": 1,
    "head_dim": 4,
    "vocab_size": 10,
}


def check_same_as_transformers_decoding(
    ours: nn.Module, theirs: nn.Module, config: object, x: Tensor, cut: int = 5
) -> None:
    """A prefill of ``cut`` positions then steps equal transformers' cached decoding (a prefill
    into a ``DynamicCache``, then one position at a time): outputs, and the states (their conv
    cache keeps one input more than our window, the oldest)."""
    from transformers import DynamicCache

    cache = DynamicCache(config=config)
    with torch.no_grad():
        expected = [theirs(x[:, :cut], cache=cache)]
        expected += [theirs(x[:, t : t + 1], cache=cache) for t in range(cut, x.shape[1])]
        y_pre, state = ours.prefill(x[:, :cut])
        y_steps, state = steps(ours, x[:, cut:], state)
    torch.testing.assert_close(torch.cat([y_pre, y_steps], 1), torch.cat(expected, 1), **TOL32)
    their_state = (cache.get_conv_state(0)[..., 1:], cache.get_recurrent_state(0))
    assert_states_close(state, their_state, **TOL32)

"""chunk_gated_delta_rule against transformers' Qwen3-Next torch kernels (the same inputs, grouped
value heads included): outputs, final states and gradients."""

from __future__ import annotations

import pytest
import torch

from hybridzoo.ops import chunk_gated_delta_rule, gated_delta_rule_step

qwen3_next = pytest.importorskip("transformers.models.qwen3_next.modeling_qwen3_next")


def _inputs(g_heads: int, h: int, t: int = 45):
    gen = torch.Generator().manual_seed(0)
    b, d_k, d_v = 2, 8, 6
    q = torch.randn(b, t, g_heads, d_k, generator=gen)
    k = torch.nn.functional.normalize(torch.randn(b, t, g_heads, d_k, generator=gen), dim=-1)
    v = torch.randn(b, t, h, d_v, generator=gen)
    g = -torch.rand(b, t, h, generator=gen) * 2
    beta = torch.rand(b, t, h, generator=gen)
    s0 = torch.randn(b, h, d_k, d_v, generator=gen)
    return [q, k, v, g, beta], s0


@pytest.mark.parametrize("backend", ["compiled", "torch"])
@pytest.mark.parametrize(("g_heads", "h"), [(3, 3), (2, 4)])
def test_equals_transformers_chunked_and_recurrent_forms(backend, g_heads, h) -> None:
    args, s0 = _inputs(g_heads, h)
    leaves = [x.requires_grad_() for x in [*args, s0]]
    o, s = chunk_gated_delta_rule(
        *args, initial_state=s0, output_final_state=True, chunk_size=16, backend=backend
    )
    for fn in (
        qwen3_next.torch_chunk_gated_delta_rule,
        qwen3_next.torch_recurrent_gated_delta_rule,
    ):
        o_ref, s_ref = fn(*args, initial_state=s0, output_final_state=True)
        torch.testing.assert_close(o, o_ref, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(s, s_ref, rtol=1e-4, atol=1e-5)
    gen = torch.Generator().manual_seed(1)
    w_o, w_s = torch.randn(o.shape, generator=gen), torch.randn(s.shape, generator=gen)
    grads = torch.autograd.grad((o * w_o).sum() + (s * w_s).sum(), leaves)
    grads_ref = torch.autograd.grad((o_ref * w_o).sum() + (s_ref * w_s).sum(), leaves)
    for got, want in zip(grads, grads_ref, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)


def test_step_equals_transformers_recurrent_step() -> None:
    args, s0 = _inputs(2, 4, t=1)
    o_ref, s_ref = qwen3_next.torch_recurrent_gated_delta_rule(
        *args, initial_state=s0, output_final_state=True
    )
    state = s0.clone()
    o = gated_delta_rule_step(*(x[:, 0] for x in args), state)
    torch.testing.assert_close(o, o_ref[:, 0], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(state, s_ref, rtol=1e-5, atol=1e-6)

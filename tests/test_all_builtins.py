"""A hybrid of every builtin layer (``"M S D A G R E F K"``): it builds with an exact count, trains
a few steps on the arena's MQAR task with finite losses (the mixture's auxiliary losses included),
and its step mode, from a fresh state and after a prefill, equals its parallel forward."""

from __future__ import annotations

import torch

import hybridzoo
from hybridzoo.arena import task_class
from hybridzoo.arena.lm import build_language_model, masked_loss_and_accuracy

PATTERN = "M S D A G R E F K"
HIDDEN = 16
#: small widths for every layer (and a mixture of 4 experts)
SMALL = {
    "hidden_size": HIDDEN,
    "dropout": 0.0,
    "mamba_state_size": 4,
    "mamba2_state_size": 4,
    "mamba2_head_dim": 8,
    "gated_deltanet_num_heads": 2,
    "gated_deltanet_head_dim": 8,
    "attention_num_heads": 2,
    "attention_num_kv_heads": 1,
    "attention_head_dim": 8,
    "gla_num_heads": 2,
    "gla_head_dim": 8,
    "rwkv_head_size": 8,
    "rwkv_mix_rank": 4,
    "rwkv_decay_rank": 4,
    "moe_num_experts": 4,
    "moe_expert_size": 8,
    "kan_grid_size": 3,
}


def test_pattern_names_every_builtin() -> None:
    builtins = {
        "mamba",
        "mamba2",
        "gated_deltanet",
        "attention",
        "gla",
        "rwkv",
        "moe",
        "ffn",
        "kan",
    }
    config = hybridzoo.HybridConfig.create(PATTERN, embed_dim=HIDDEN, **SMALL)
    assert set(config.pattern) == builtins


def test_trains_on_mqar_with_finite_losses() -> None:
    torch.manual_seed(0)
    task = task_class("mqar")(vocab_size=32, seq_len=16, num_kv_pairs=2)
    lm = build_language_model(PATTERN, vocab_size=32, **SMALL).train()
    optimizer = torch.optim.AdamW(lm.parameters(), lr=3e-3)
    losses = []
    for step in range(3):
        batch = task.generate(4, seed=step)
        loss, _, _ = masked_loss_and_accuracy(lm(batch.inputs), batch.targets)
        aux = hybridzoo.aux_losses(lm)
        assert set(aux) == {"backbone.7.moe.load_balancing", "backbone.7.moe.z_loss"}
        total = loss + sum(aux.values())
        optimizer.zero_grad()
        total.backward()
        assert all(torch.isfinite(p.grad).all() for p in lm.parameters() if p.grad is not None)
        optimizer.step()
        losses.append(float(total.detach()))
    assert all(torch.isfinite(torch.tensor(losses)))


def test_steps_equal_the_parallel_forward() -> None:
    torch.manual_seed(1)
    model = hybridzoo.build(PATTERN, embed_dim=HIDDEN + 3, output="sequence", **SMALL)
    model = model.double().eval()
    assert model.param_count() == hybridzoo.param_count(PATTERN, embed_dim=HIDDEN + 3, **SMALL)
    x = torch.randn(2, 10, HIDDEN + 3, dtype=torch.float64)
    with torch.no_grad():
        expected = model(x)
        state = model.init_state(2)
        stepped = torch.stack([model.step(x[:, t], state)[0] for t in range(10)], 1)
        torch.testing.assert_close(stepped, expected, atol=1e-10, rtol=1e-10)
        y_pre, state = model.prefill(x[:, :6])
        rest = torch.stack([model.step(x[:, t], state)[0] for t in range(6, 10)], 1)
        torch.testing.assert_close(torch.cat((y_pre, rest), 1), expected, atol=1e-10, rtol=1e-10)

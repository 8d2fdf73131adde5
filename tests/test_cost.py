"""The cost model against measurement: the products with weights against FlopCounterMode on a
real forward, the state bytes against a real init_state, the totals against param_count."""

from __future__ import annotations

import json

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch.utils._pytree import tree_flatten
from torch.utils.flop_counter import FlopCounterMode
from toy_layers import conv_spec

import hybridzoo
from hybridzoo.plugin import causal_context

MATMULS = {torch.ops.aten.mm, torch.ops.aten.addmm, torch.ops.aten.bmm, torch.ops.aten.baddbmm}


class WeightFlops(FlopCounterMode):
    """FlopCounterMode's count of the matrix products one of whose operands is a weight, or a
    tensor made from weights alone (KAN's scaled spline coefficients, a weight's transpose).

    The mixers' own products are left out: FlopCounterMode does not count CPU attention at all
    (its fused op has no formula), and the chunked recurrences' products grow with their
    chunk length; the mixer FLOPs of the cost model are the step form, documented per layer."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__(display=False)
        tensors = [*model.parameters(), *model.buffers()]
        self.weights = {t.untyped_storage().data_ptr() for t in tensors}
        self.weight_flops = 0
        self.alive: list[torch.Tensor] = []

    def _count_flops(self, func_packet, out, args, kwargs):
        inputs = [t for t in tree_flatten((args, kwargs))[0] if isinstance(t, torch.Tensor)]
        made = [t.untyped_storage().data_ptr() in self.weights for t in inputs]
        if inputs and all(made):
            outputs = [t for t in tree_flatten(out)[0] if isinstance(t, torch.Tensor)]
            self.weights.update(t.untyped_storage().data_ptr() for t in outputs)
            self.alive.extend(outputs)  # no activation may reuse their memory while counting
        if func_packet in MATMULS and any(made):
            self.weight_flops += self.flop_registry[func_packet](*args, **kwargs, out_val=out)
        return super()._count_flops(func_packet, out, args, kwargs)


def measured_matmul_flops(model: hybridzoo.HybridModel, batch: int, length: int) -> float:
    x = torch.randn(batch, length, model.config.embed_dim)
    with WeightFlops(model) as counter, torch.no_grad():
        model(x)
    assert counter.weight_flops <= counter.get_total_flops()
    return counter.weight_flops / batch


H = 32
CASES = {
    "mamba": ("M", {"mamba_state_size": 4}),
    "mamba2": ("S", {"mamba2_head_dim": 16, "mamba2_state_size": 8, "mamba2_num_groups": 2}),
    "gated_deltanet": ("D", {"gated_deltanet_head_dim": 8, "gated_deltanet_num_v_heads": 8}),
    "attention": ("A A{window_size=None, num_kv_heads=2, conv_size=3, ffn_activation='swiglu'}",
                  {"attention_head_dim": 8, "attention_window_size": 5}),
    "gla": ("G", {"gla_head_dim": 8, "gla_gate_low_rank_dim": 4}),
    "rwkv": ("R", {"rwkv_head_size": 8, "rwkv_mix_rank": 4, "rwkv_decay_rank": 8}),
    "ffn": ("F F{activation='swiglu'} F{activation='relu2', inner_size=24}", {}),
    "moe": ("E E{top_k=3, shared_expert_size=8, shared_expert_gate=True}",
            {"moe_num_experts": 4, "moe_expert_size": 16}),
    "kan": ("K K{spline_scaler=False, grid_size=2}", {}),
    "hybrid": ("M S D A{window_size=3} G R E F K",
               {"embed_dim": 24, "shared_layers": {"F{expand_factor=2}": [2, 5]},
                "mamba2_head_dim": 16, "attention_head_dim": 8, "gla_head_dim": 8,
                "rwkv_head_size": 8, "gated_deltanet_head_dim": 8, "moe_num_experts": 3,
                "moe_expert_size": 8}),
}  # fmt: skip


def _options(case: str) -> dict:
    return {"hidden_size": H, "embed_dim": H, **CASES[case][1]}


def test_every_builtin_has_a_case_and_a_flops_formula():
    builtin = [s for s in hybridzoo.get_registry().specs() if s.name in CASES]
    assert {s.name for s in builtin} == set(CASES) - {"hybrid"}
    assert all(s.flops is not None for s in builtin)


@pytest.mark.parametrize("case", sorted(CASES))
def test_the_matmul_flops_agree_with_flop_counter_mode(case, monkeypatch):
    # moe zero-pads an expert's block of fewer than MIN_BLOCK rows (bitwise containment): at
    # these tiny lengths that padding would dominate; the formula counts the tokens' own work
    monkeypatch.setattr("hybridzoo_plugins.moe.layer.MIN_BLOCK", 1)
    pattern, _ = CASES[case]
    options = _options(case)
    for length in (1, 7, 12):
        model = hybridzoo.build(pattern, **options).eval()
        card = hybridzoo.cost(pattern, seq_len=length, **options)
        formula = sum(r.matmul for r in card.rows)
        assert formula == pytest.approx(measured_matmul_flops(model, 2, length), rel=0.02)
        assert card.params == model.param_count() == hybridzoo.param_count(pattern, **options)
        assert card.active_params == hybridzoo.active_param_count(pattern, **options)


def _state_bytes(state: hybridzoo.HybridState) -> int:
    return sum(t.numel() * t.element_size() for t in tree_flatten(state.layers)[0])


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float64])
@pytest.mark.parametrize("case", sorted(CASES))
def test_the_state_bytes_equal_a_real_init_state(case, dtype):
    pattern, _ = CASES[case]
    options = _options(case)
    model = hybridzoo.build(pattern, **options).to(dtype)
    card = hybridzoo.cost(pattern, seq_len=64, dtype=dtype, **options)
    # the full-attention case holds 64 positions, the capacity its cache starts with
    assert card.state_bytes == _state_bytes(model.init_state(1))
    assert card.state_bytes == sum(r.state_bytes for r in card.rows)


def test_kv_bytes_grow_the_state_of_full_attention_only():
    options = {"hidden_size": H, "attention_head_dim": 8, "attention_num_kv_heads": 2}
    full = hybridzoo.cost("M A{window_size=None}", seq_len=100, dtype="bfloat16", **options)
    longer = hybridzoo.cost("M A{window_size=None}", seq_len=101, dtype="bfloat16", **options)
    assert full.kv_bytes_per_token == 2 * 2 * 8 * 2  # keys and values, 2 kv heads, bf16
    assert longer.state_bytes - full.state_bytes == full.kv_bytes_per_token
    window = hybridzoo.cost("M A{window_size=16}", seq_len=100, **options)
    assert (
        window.state_bytes
        == hybridzoo.cost("M A{window_size=16}", seq_len=9, **options).state_bytes
    )


@given(st.integers(1, 200), st.one_of(st.none(), st.integers(1, 300)))
def test_causal_context_counts_the_keys_each_query_sees(length, window):
    keys = sum(min(t + 1, window or t + 1) for t in range(length))
    assert causal_context(length, window) == keys


def test_attention_mixer_flops_follow_the_length_and_the_window():
    options = {"hidden_size": H, "attention_head_dim": 8, "attention_num_heads": 4}
    for length, window in [(10, 4), (10, None), (3, 8)]:
        card = hybridzoo.cost("A", seq_len=length, attention_window_size=window, **options)
        seen = torch.ones(length, length).tril()
        if window is not None:
            seen = seen.triu(-(window - 1))
        assert card.rows[0].mixer == 4 * 4 * 8 * int(seen.sum())  # q·k and weights·v per key


def test_totals_training_dtypes_and_unknown_layers():
    card = hybridzoo.cost("M M A{window_size=None} E", seq_len=256, embed_dim=64, dtype="bf16")
    assert card.train_flops_per_token == 3 * card.flops_per_token
    assert (
        card.flops_per_token == pytest.approx(sum(r.flops for r in card.rows) / 256)
        and card.dtype == "bf16"
        and card.itemsize == 2
    )
    assert card.rows[0].layer == "input_proj" and card.rows[-1].layer == "final_norm"
    assert card.params == hybridzoo.param_count("M M A{window_size=None} E", embed_dim=64)
    assert card.to_dict()["rows"][1]["flops_per_token"] == card.rows[1].flops_per_token
    with pytest.raises(hybridzoo.OptionError, match="unknown dtype 'float33'.*'float32'"):
        hybridzoo.cost("M", dtype="float33")
    with hybridzoo.temporary_layers(conv_spec()):
        unknown = hybridzoo.cost("M C", hidden_size=16)
    assert unknown.unknown == ("conv",) and unknown.flops_per_token is None
    assert unknown.rows[1].flops is None and unknown.rows[0].flops is not None


def test_a_dialect_pattern_costs_what_it_builds():
    megatron = hybridzoo.cost("M-M*-", dialect="megatron", seq_len=32, hidden_size=64)
    native = hybridzoo.cost("S F S A{ffn_expand_factor=0, window_size=None, qk_norm=False} F",
                            seq_len=32, hidden_size=64)  # fmt: skip
    assert megatron.flops_per_token == native.flops_per_token
    assert megatron.params == native.params


def test_show_prints_the_cost_card(capsys):
    from hybridzoo.cli import main

    pattern = "M M A{window_size=None} E"
    assert main(["show", pattern, "--embed-dim", "256", "--seq-len", "512"]) == 0
    out = capsys.readouterr().out
    card = hybridzoo.cost(pattern, embed_dim=256, seq_len=512)
    lines = {line.split()[0]: line for line in out.splitlines() if line[:6].strip().isdigit()}
    for row in card.rows[:4]:
        cells = lines[str(row.position)].split()
        assert cells[1:5] == [row.symbol, row.layer, f"{row.params:,}", f"{row.active_params:,}"]
        assert cells[-2:] == [f"{row.state_bytes:,}", f"{row.kv_bytes_per_token:,}"]
    assert "A{window_size=None}" in out and "training (3x)" in out
    assert main(["show", pattern, "--json", "--dtype", "bfloat16"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["cost"]["state_bytes"] == hybridzoo.cost(pattern, dtype="bfloat16").state_bytes
    assert main(["show", "M-M*-|M-", "--dialect", "megatron", "--hidden-size", "64"]) == 0
    assert "Pipeline stages end after positions 5" in capsys.readouterr().out
    types = '["linear_attention", "moe", "full_attention", "mlp"]'
    argv = ["show", types, "--dialect", "transformers", "--model-type", "nemotron_h"]
    assert main([*argv, "--hidden-size", "64"]) == 0
    captured = capsys.readouterr()
    assert captured.out.startswith("Layer pattern: S → E → A → F")
    assert "note: NemotronH's experts" in captured.err

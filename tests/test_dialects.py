"""Patterns in Megatron-LM's and transformers' notations: parsed into the model they describe,
written back to the same text, meaning that cannot be carried refused or warned about."""

from __future__ import annotations

import attrs
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from toy_layers import conv_spec

import hybridzoo
from hybridzoo import DialectWarning, PatternError, format_pattern, parse_pattern
from hybridzoo.plugin import Notation

pytestmark = pytest.mark.filterwarnings("ignore::hybridzoo.DialectWarning")

NEMOTRON_H = "M-M-M*-M-M-M*-"  # the Nemotron-H layout: Mamba-2, MLPs, a few attention layers
SMALL = {"hidden_size": 32, "embed_dim": 32, "attention_num_heads": 2, "attention_head_dim": 16}


def test_a_nemotron_h_megatron_string_builds_its_model_and_formats_back():
    pattern = parse_pattern(NEMOTRON_H, dialect="megatron")
    assert pattern.layers[:4] == ("mamba2", "ffn", "mamba2", "ffn")
    assert pattern.layers[5:7] == ("attention", "ffn") and len(pattern) == len(NEMOTRON_H)
    implied = dict(pattern.layer_options)
    assert implied["attention_ffn_expand_factor"] == 0 and implied["attention_window_size"] is None
    model = hybridzoo.build(NEMOTRON_H, dialect="megatron", **SMALL)
    attention = model.blocks[5]
    assert attention.layer == "attention" and len(attention.sub_blocks) == 1  # no FFN of its own
    assert attention.sub_blocks[0].body.window_size is None  # Megatron's default: full attention
    assert model(torch.randn(1, 5, 32)).shape == (1, 32)
    assert format_pattern(pattern, dialect="megatron", **SMALL) == NEMOTRON_H
    assert format_pattern(model.config, dialect="megatron") == NEMOTRON_H


def test_pipeline_boundaries_are_kept_and_written_back():
    text = "M-M-|M-M*-|M-M-|M-M*-"
    pattern = parse_pattern(text, dialect="megatron")
    assert pattern.boundaries == (4, 9, 13) and len(pattern) == 18
    assert format_pattern(pattern, dialect="megatron") == text
    assert (
        parse_pattern("M*M*/", dialect="megatron").layers
        == parse_pattern("M*M*", "megatron").layers
    )


def test_what_megatron_cannot_hold_is_an_error_or_a_warning():
    with pytest.raises(PatternError, match="megatron notation has no name for the layer 'mamba'"):
        format_pattern("M F", dialect="megatron")  # Mamba-1: Megatron's M is Mamba-2
    with pytest.raises(PatternError, match="attention_ffn_expand_factor=4, but the megatron '\\*'"):
        format_pattern("S A", dialect="megatron")
    no_ffn = {"attention_ffn_expand_factor": 0, "attention_qk_norm": False}
    with pytest.raises(PatternError, match="one 'window_size' for the whole model"):
        format_pattern("A A{window_size=8}", dialect="megatron", **no_ffn)
    with pytest.warns(DialectWarning, match="does not hold window_size=8"):
        assert format_pattern("S A", dialect="megatron", attention_window_size=8, **no_ffn) == "M*"


def test_the_native_grammar_keeps_its_meaning():
    assert parse_pattern("(S F)*2").layers == ("mamba2", "ffn") * 2  # '*' repeats
    assert parse_pattern("S -> F").layers == ("mamba2", "ffn")  # '->' separates
    with pytest.raises(PatternError, match="unknown dialect 'megatorn'.*Did you mean 'megatron'"):
        parse_pattern("M*", dialect="megatorn")
    megatron = parse_pattern("M-*", dialect="megatron")
    native = format_pattern(megatron)  # the implied options written into the positions' blocks
    assert native.startswith("S F A{ffn_expand_factor=0, window_size=None")
    one, other = hybridzoo.HybridConfig.create(native), hybridzoo.HybridConfig.create(megatron)
    assert [one.options_of(n, i) for i, n in enumerate(one.pattern)] == [
        other.options_of(n, i) for i, n in enumerate(other.pattern)
    ]


def test_the_symbols_come_from_the_plugins():
    spec = attrs.evolve(
        conv_spec(name="latent", symbol="Q"), notations=(Notation("megatron", "+"),)
    )
    with hybridzoo.temporary_layers(spec):
        assert parse_pattern("M+", dialect="megatron").layers == ("mamba2", "latent")
        assert format_pattern("S Q", dialect="megatron") == "M+"
    twin = attrs.evolve(conv_spec(name="other", symbol="Z"), notations=(Notation("megatron", "-"),))
    with (
        hybridzoo.temporary_layers(twin),
        pytest.raises(hybridzoo.PluginConflictError, match="'-'"),
    ):
        parse_pattern("M-", dialect="megatron")
    with pytest.raises(hybridzoo.PluginError, match="sets kernel, which its options record"):
        hybridzoo.get_registry().register(
            attrs.evolve(
                conv_spec(name="bad", symbol="Y"),
                notations=(Notation("megatron", "%", {"kernel": 3}),),
            )
        )


NEMOTRON_TYPES = ["linear_attention", "moe", "linear_attention", "mlp", "full_attention", "mlp"]


def test_a_nemotron_h_layer_types_list_round_trips():
    with pytest.warns(DialectWarning, match="squared-ReLU"):
        pattern = parse_pattern(NEMOTRON_TYPES, dialect="transformers", model_type="nemotron_h")
    assert pattern.layers == ("mamba2", "moe", "mamba2", "ffn", "attention", "ffn")
    implied = dict(pattern.layer_options)
    assert implied["ffn_activation"] == "relu2" and implied["attention_rope_base"] is None
    assert implied["moe_router"] == "sigmoid" and implied["moe_num_experts"] == 8
    out = format_pattern(pattern, dialect="transformers", model_type="nemotron_h", **SMALL)
    assert out["layers_block_type"] == NEMOTRON_TYPES
    legacy = {"model_type": "nemotron_h", "hybrid_override_pattern": "ME-M*-"}
    assert parse_pattern(legacy, dialect="transformers").layers[:3] == ("mamba2", "moe", "ffn")


JAMBA = {"model_type": "jamba", "num_hidden_layers": 8, "attn_layer_period": 8,
         "attn_layer_offset": 4, "expert_layer_period": 2, "expert_layer_offset": 1,
         "num_experts": 4}  # fmt: skip
QWEN3_NEXT = {"model_type": "qwen3_next", "num_hidden_layers": 8, "full_attention_interval": 4,
              "num_experts": 4, "num_experts_per_tok": 2, "moe_intermediate_size": 16,
              "shared_expert_intermediate_size": 16, "decoder_sparse_step": 2}  # fmt: skip


@pytest.mark.parametrize("config", [JAMBA, QWEN3_NEXT], ids=["jamba", "qwen3_next"])
def test_period_and_interval_configs_build_and_format_back(config):
    pattern = parse_pattern(config, dialect="transformers")
    assert len(pattern) == 2 * config["num_hidden_layers"]  # a mixer, then its feed-forward
    model = hybridzoo.build(pattern, **SMALL)
    assert model(torch.randn(1, 3, 32)).shape == (1, 32)
    out = format_pattern(model.config, dialect="transformers", model_type=config["model_type"])
    assert {k: out[k] for k in config if k != "model_type"} == {
        k: v for k, v in config.items() if k != "model_type"
    }


def test_the_feed_forward_of_each_decoder_layer():
    jamba = parse_pattern(JAMBA, dialect="transformers")
    assert jamba.layers[:4] == ("mamba", "ffn", "mamba", "moe") and jamba.layers[8] == "attention"
    assert dict(jamba.layer_options)["moe_num_experts"] == 4  # read from the configuration
    qwen = parse_pattern(QWEN3_NEXT, dialect="transformers")
    assert qwen.layers[6:8] == ("attention", "moe") and qwen.layers[:4] == (
        "gated_deltanet", "ffn", "gated_deltanet", "moe"
    )  # fmt: skip
    config = {"model_type": "bamba", "num_hidden_layers": 3, "attn_layer_indices": [1]}
    bamba = parse_pattern(config, dialect="transformers")
    assert bamba.layers == ("mamba2", "ffn", "attention", "ffn", "mamba2", "ffn")
    assert format_pattern(bamba, dialect="transformers", model_type="bamba", **SMALL) == {
        "num_hidden_layers": 3, "attn_layer_indices": [1]
    }  # fmt: skip


def test_transformers_errors_say_what():
    with pytest.raises(PatternError, match="models read here: nemotron_h, jamba.*Did you mean"):
        parse_pattern(["mamba"], dialect="transformers", model_type="jambo")
    with pytest.raises(PatternError, match="give the configuration"):
        parse_pattern(["mamba"], dialect="transformers", model_type="jamba")
    with pytest.raises(PatternError, match="'linear_atention' is no installed hybridzoo layer"):
        parse_pattern(["linear_atention"], dialect="transformers", model_type="nemotron_h")
    with pytest.raises(PatternError, match="attn_layer_offset \\(8\\) must be an integer in"):
        parse_pattern({**JAMBA, "attn_layer_offset": 8}, dialect="transformers")
    with pytest.raises(PatternError, match="no name for the layer 'gla'"):
        format_pattern("G F", dialect="transformers", model_type="jamba")
    with pytest.raises(PatternError, match="a mixer then its feed-forward; positions 1 and 2"):
        format_pattern("M M", dialect="transformers", model_type="jamba")


MODEL_CLASSES = {  # transformers' module names, as the hybridzoo layer they are
    "JambaMambaMixer": "mamba", "NemotronHMamba2Mixer": "mamba2", "BambaMixer": "mamba2",
    "Qwen3NextGatedDeltaNet": "gated_deltanet", "Attention": "attention", "MLP": "ffn",
    "MoE": "moe", "SparseMoeBlock": "moe",
}  # fmt: skip


def _transformers_layers(model) -> list[str]:
    """The sub-layers of a transformers hybrid, mixer first, as hybridzoo layer names."""
    out = []
    for layer in model.layers:
        kinds = []
        for child in layer.children():
            name = type(child).__name__
            kinds += [v for k, v in MODEL_CLASSES.items() if name.endswith(k)][:1]
        out += sorted(kinds, key=lambda k: k in ("ffn", "moe"))
    return out


@pytest.mark.parametrize("model_type", ["jamba", "nemotron_h", "qwen3_next", "bamba"])
def test_the_layers_are_those_transformers_builds(model_type):
    transformers = pytest.importorskip("transformers")
    tiny = {"hidden_size": 16, "intermediate_size": 16, "num_attention_heads": 2,
            "num_key_value_heads": 1, "vocab_size": 8}  # fmt: skip
    fields = {
        "jamba": {k: v for k, v in JAMBA.items() if k != "model_type"}
        | {"mamba_d_state": 2, "mamba_dt_rank": 2},
        "nemotron_h": {"layers_block_type": NEMOTRON_TYPES, "head_dim": 8, "mamba_num_heads": 2,
                       "mamba_head_dim": 8, "ssm_state_size": 2, "n_groups": 1,
                       "n_routed_experts": 2, "moe_intermediate_size": 4,
                       "moe_shared_expert_intermediate_size": 4},
        "qwen3_next": {k: v for k, v in QWEN3_NEXT.items() if k != "model_type"}
        | {"head_dim": 8, "linear_num_value_heads": 2, "linear_num_key_heads": 2,
           "linear_key_head_dim": 4, "linear_value_head_dim": 4},
        "bamba": {"num_hidden_layers": 4, "attn_layer_indices": [1, 3], "mamba_n_heads": 4,
                  "mamba_d_head": 8, "mamba_d_state": 2, "mamba_n_groups": 1},
    }[model_type]  # fmt: skip
    config = transformers.AutoConfig.for_model(model_type, **tiny, **fields)
    expected = _transformers_layers(transformers.AutoModel.from_config(config))
    assert list(parse_pattern(config, dialect="transformers").layers) == expected


_SEGMENT = st.text("MG*-E", min_size=1, max_size=5)


@given(st.lists(_SEGMENT, min_size=1, max_size=4))
def test_any_megatron_string_formats_back_to_itself(segments):
    text = "|".join(segments)
    pattern = parse_pattern(text, dialect="megatron")
    assert len(pattern) == len(text.replace("|", ""))
    assert format_pattern(pattern, dialect="megatron", hidden_size=64) == text


def test_dialect_warnings_point_at_the_users_call():
    import hybridzoo

    no_ffn = {"attention_ffn_expand_factor": 0, "attention_qk_norm": False}
    calls = [
        lambda: parse_pattern(NEMOTRON_TYPES, dialect="transformers", model_type="nemotron_h"),
        lambda: hybridzoo.build(
            NEMOTRON_TYPES, dialect="transformers", model_type="nemotron_h", embed_dim=8,
            hidden_size=8, mamba2_head_dim=4, attention_head_dim=4, moe_expert_size=8,
        ),
        lambda: format_pattern("S A", dialect="megatron", attention_window_size=8, **no_ffn),
    ]  # fmt: skip
    for call in calls:
        with pytest.warns(DialectWarning) as caught:
            call()
        assert {w.filename for w in caught} == {__file__}

"""Checkpoints from and to transformers: MambaForCausalLM, Mamba2ForCausalLM and
NemotronHForCausalLM (random small configs, nothing downloaded) give the same logits and the same
greedy generations as converted HybridLMs; all three convert back; what does not convert is a
clear error."""

from __future__ import annotations

import warnings

import pytest
import torch
from lm_helpers import tokens

import hybridzoo
from hybridzoo import ConversionError
from hybridzoo.lm import architectures
from hybridzoo.lm.architectures import Architecture, register_architecture

transformers = pytest.importorskip("transformers")

VOCAB = 37


#: small random transformers models: ``(model class, config class, config fields)``
MODELS = {
    "mamba": (
        "MambaForCausalLM",
        "MambaConfig",
        {"hidden_size": 16, "state_size": 4, "num_hidden_layers": 2, "intermediate_size": 32},
    ),
    "mamba2": (
        "Mamba2ForCausalLM",
        "Mamba2Config",
        {"hidden_size": 16, "state_size": 4, "num_hidden_layers": 2, "num_heads": 4,
         "head_dim": 8, "n_groups": 2, "expand": 2, "chunk_size": 4},
    ),
    "nemotron_h": (
        "NemotronHForCausalLM",
        "NemotronHConfig",
        {"hidden_size": 32,
         "layers_block_type": ["linear_attention", "full_attention", "mlp", "linear_attention"],
         "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 8,
         "intermediate_size": 48, "ssm_state_size": 4, "mamba_num_heads": 8,
         "mamba_head_dim": 8, "n_groups": 2, "chunk_size": 4},
    ),
}  # fmt: skip


def _model(name: str, **extra) -> torch.nn.Module:
    model_class, config_class, fields = MODELS[name]
    config = getattr(transformers, config_class)(vocab_size=VOCAB, **{**fields, **extra})
    return getattr(transformers, model_class)(config)


def _in_its_dtype(norm: torch.nn.Module) -> None:
    """A transformers RMSNorm (plain, gated, or gated per group) computing in the input's dtype
    (transformers' round to float32 whatever the dtype): the same formula."""
    group = getattr(norm, "group_size", None)

    def forward(x: torch.Tensor, gate: torch.Tensor | None = None) -> torch.Tensor:
        if gate is not None:
            x = x * torch.nn.functional.silu(gate)
        grouped = x.unflatten(-1, (-1, group)) if group else x
        grouped = grouped * torch.rsqrt(
            grouped.pow(2).mean(-1, keepdim=True) + norm.variance_epsilon
        )
        return norm.weight * grouped.flatten(-2) if group else norm.weight * grouped

    norm.forward = forward


def _exact(model: torch.nn.Module) -> torch.nn.Module:
    """``model`` computing float64 in float64 throughout: its RMSNorms and a float32 residual
    stream (``residual_in_fp32``) would round to float32 (hybridzoo computes in the model's
    dtype); nothing else changes."""
    for module in model.modules():
        if type(module).__name__.endswith(("RMSNorm", "RMSNormGated")):
            _in_its_dtype(module)
        if getattr(module, "residual_in_fp32", False):
            module.residual_in_fp32 = False
    return model


@pytest.fixture
def float64(monkeypatch) -> None:
    """transformers' Mamba-2 scan and attention softmax compute in float32 whatever the dtype
    (``x.float()``, ``softmax(..., dtype=torch.float32)``): in a float64 test they keep float64,
    so that a float64 comparison compares float64 computations."""
    to_float, softmax = torch.Tensor.float, torch.nn.functional.softmax

    def keep_float64(self, *args, **kwargs):
        return self if self.dtype == torch.float64 else to_float(self, *args, **kwargs)

    def softmax_in_float64(x, *args, dtype=None, **kwargs):
        keep = dtype is not None and x.dtype == torch.float64
        return softmax(x, *args, dtype=None if keep else dtype, **kwargs)

    monkeypatch.setattr(torch.Tensor, "float", keep_float64)
    monkeypatch.setattr(torch.nn.functional, "softmax", softmax_in_float64)


def _source(name: str, dtype: torch.dtype = torch.float32, seed: int = 0, **extra):
    """A random transformers model (float64: computing in float64, see :func:`_exact`)."""
    torch.manual_seed(seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = _model(name, **extra).to(dtype).eval()
    model.generation_config.eos_token_id = None  # generate the full length
    model.generation_config.pad_token_id = 0
    return _exact(model) if dtype == torch.float64 else model


def _ids(batch: int = 2, length: int = 9, seed: int = 1) -> torch.Tensor:
    return tokens(batch, length, vocab_size=VOCAB, seed=seed)


def _logits(model, ids: torch.Tensor) -> torch.Tensor:
    """The transformers model's logits in its own dtype (its forward casts them to float32)."""
    return model.lm_head(model.base_model(ids).last_hidden_state)


def _relative(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).abs().max() / b.abs().max()).item()


@torch.no_grad()
@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize(("dtype", "tolerance"), [(torch.float32, 1e-4), (torch.float64, 1e-10)])
def test_the_converted_model_gives_the_same_logits(name, dtype, tolerance, request) -> None:
    if dtype == torch.float64:
        request.getfixturevalue("float64")
    source = _source(name, dtype)
    lm = hybridzoo.from_transformers(source)
    assert isinstance(lm, hybridzoo.HybridLM) and not lm.training
    assert lm.embedding.weight.dtype == dtype
    ids = _ids()
    assert _relative(lm(ids), _logits(source, ids)) <= tolerance
    weights = {id(p) for p in source.parameters()}
    assert lm.param_count() == sum(p.numel() for p in source.parameters() if id(p) in weights)


@torch.no_grad()
@pytest.mark.parametrize("name", MODELS)
def test_greedy_generation_is_the_same(name, float64) -> None:
    source = _source(name, torch.float64, seed=2)
    lm = hybridzoo.from_transformers(source)
    prompts = _ids(2, 5, seed=3)
    mask = torch.ones_like(prompts)  # (a token equal to pad_token_id is not padding here)
    theirs = source.generate(prompts, attention_mask=mask, max_new_tokens=8, do_sample=False)
    assert torch.equal(lm.generate(prompts, 8), theirs)


def test_the_pattern_and_options_come_from_the_config() -> None:
    lm = hybridzoo.from_transformers(_source("nemotron_h"))
    backbone = lm.config.backbone
    assert backbone.pattern == ("mamba2", "attention", "ffn", "mamba2")
    attention = backbone.options_of("attention")
    assert (attention.num_heads, attention.num_kv_heads, attention.head_dim) == (4, 2, 8)
    assert attention.rope_base is None and attention.window_size is None
    assert attention.ffn_expand_factor == 0 and not attention.qk_norm
    ffn = backbone.options_of("ffn")
    assert (ffn.activation, ffn.inner_size, ffn.bias) == ("relu2", 48, False)
    mamba2 = backbone.options_of("mamba2")
    assert (mamba2.num_groups, mamba2.head_dim, mamba2.state_size) == (2, 8, 4)
    assert backbone.norm == "rmsnorm" and backbone.dropout == 0.0 and not lm.tied
    assert "S → A → F → S" in hybridzoo.visualize(list(backbone.pattern))


@torch.no_grad()
@pytest.mark.parametrize("name", MODELS)
def test_the_way_back_round_trips(name, float64) -> None:
    source = _source(name, torch.float64)
    lm = hybridzoo.from_transformers(source)
    back = _exact(hybridzoo.to_transformers(lm))
    assert type(back) is type(source) and not back.training
    ids = _ids()
    torch.testing.assert_close(_logits(back, ids), _logits(source, ids), rtol=0, atol=0)
    again = hybridzoo.from_transformers(back)
    assert again.config == lm.config
    assert all(torch.equal(a, b) for a, b in zip(again.parameters(), lm.parameters(), strict=True))


#: the options of a NemotronH model: its attention has no rotary embedding, no window, no QK-norm
#: and no FFN, its MLP a squared ReLU, and the Mamba-2 time step is clamped at time_step_min
NEMOTRON_H_OPTIONS = {
    "mamba2_head_dim": 8,
    "mamba2_state_size": 4,
    "mamba2_num_groups": 2,
    "mamba2_dt_limit_min": 0.001,
    "attention_num_heads": 2,
    "attention_num_kv_heads": 1,
    "attention_head_dim": 8,
    "attention_ffn_expand_factor": 0,
    "attention_rope_base": None,
    "attention_window_size": None,
    "attention_qk_norm": False,
    "ffn_activation": "relu2",
}


@torch.no_grad()
@pytest.mark.parametrize(
    ("pattern", "options", "model_type"),
    [
        ("M M M", {"mamba_state_size": 4, "tie_embeddings": False}, "mamba"),
        ("S S", {"mamba2_head_dim": 8, "mamba2_state_size": 4, "mamba2_num_groups": 2}, "mamba2"),
        ("S A F S", NEMOTRON_H_OPTIONS, "nemotron_h"),
    ],
)
def test_a_model_built_here_converts_to_transformers(pattern, options, model_type, float64) -> None:
    torch.manual_seed(0)
    lm = hybridzoo.build_lm(
        pattern, vocab_size=VOCAB, hidden_size=16, norm="rmsnorm", dropout=0.0, **options
    ).double()
    lm.eval()
    out = _exact(hybridzoo.to_transformers(lm))
    assert out.config.model_type == model_type
    ids = _ids()
    assert _relative(_logits(out, ids), lm(ids)) <= 1e-10


@pytest.mark.parametrize(
    ("pattern", "options", "message"),
    [
        ("M A", {}, "layers \\['attention'\\] \\(it has mamba only\\)"),
        ("M M", {"norm": "layernorm"}, "norm='layernorm'"),
        ("M M", {"positional_encoding": "sinusoidal"}, "positional_encoding='sinusoidal'"),
        ("M M", {"embed_dim": 8, "tie_embeddings": False}, "embed_dim=8 != hidden_size=16"),
        ("M M", {"max_positions": 32}, "max_positions=32 \\(learned absolute positions\\)"),
    ],
)
@pytest.mark.filterwarnings("ignore::hybridzoo.UnusedOptionWarning")  # attention_head_dim, "M M"
def test_what_transformers_cannot_express_is_named(pattern, options, message) -> None:
    lm = hybridzoo.build_lm(
        pattern,
        vocab_size=VOCAB,
        hidden_size=16,
        mamba_state_size=4,
        attention_head_dim=8,
        **{"norm": "rmsnorm", **options},
    )
    with pytest.raises(ConversionError, match=f"MambaForCausalLM cannot express .*{message}"):
        hybridzoo.to_transformers(lm, "mamba")
    with pytest.raises(ConversionError, match="no transformers architecture expresses"):
        hybridzoo.to_transformers(lm)


def test_what_nemotron_h_cannot_express_is_named_all_at_once() -> None:
    options = {**NEMOTRON_H_OPTIONS, "attention_rope_base": 1e4, "ffn_activation": "gelu"}
    options.pop("mamba2_dt_limit_min")
    lm = hybridzoo.build_lm("S A F", vocab_size=VOCAB, hidden_size=16, norm="rmsnorm", **options)
    message = (
        "NemotronHForCausalLM cannot express mamba2_dt_limit_min=0.0 \\(NemotronH: 0.001\\); "
        "attention_rope_base=10000.0 \\(NemotronH: None\\); "
        "ffn_activation='gelu' \\(NemotronH: 'relu2'\\)$"
    )
    with pytest.raises(ConversionError, match=message):
        hybridzoo.to_transformers(lm, "nemotron_h")
    sub_blocks = {**NEMOTRON_H_OPTIONS, "attention_ffn_expand_factor": 2}
    lm = hybridzoo.build_lm("S A F", vocab_size=VOCAB, hidden_size=16, norm="rmsnorm", **sub_blocks)
    with pytest.raises(ConversionError, match="NemotronHForCausalLM cannot express blocks of sev"):
        hybridzoo.to_transformers(lm, "nemotron_h")


@pytest.mark.filterwarnings("ignore::hybridzoo.DialectWarning")  # the moe notation's note
def test_moe_blocks_are_a_clear_error() -> None:
    moe = ["linear_attention", "moe"]
    source = _source(
        "nemotron_h",
        layers_block_type=moe,
        n_routed_experts=4,
        moe_intermediate_size=16,
        moe_shared_expert_intermediate_size=16,
    )
    with pytest.raises(ConversionError, match="block 1 is a mixture of experts.*'moe'.*grouped"):
        hybridzoo.from_transformers(source)


def test_what_no_architecture_converts_is_a_clear_error() -> None:
    config = transformers.GPT2Config(n_layer=1, n_embd=8, n_head=2, vocab_size=VOCAB)
    with pytest.raises(ConversionError, match="model_type 'gpt2'.*Converted: .*MambaForCausalLM"):
        hybridzoo.from_transformers(transformers.GPT2LMHeadModel(config))
    with pytest.raises(ConversionError, match="takes a transformers model"):
        hybridzoo.from_transformers(torch.nn.Linear(2, 2))
    with pytest.raises(ConversionError, match="takes a HybridLM"):
        hybridzoo.to_transformers(torch.nn.Linear(2, 2))  # type: ignore[arg-type]
    lm = hybridzoo.build_lm("M", vocab_size=VOCAB, hidden_size=16, norm="rmsnorm")
    one_way = Architecture(name="ToyForCausalLM", model_type="toy", from_transformers="a.b:c")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(architectures, "_REGISTRY", architectures._Registry())
        register_architecture(one_way)
        with pytest.raises(
            ConversionError, match="ToyForCausalLM \\(toy\\) has no conversion back"
        ):
            hybridzoo.to_transformers(lm, "toy")

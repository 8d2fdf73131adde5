"""The builtin arena presets: the default run, ``--quick`` (a smoke test) and ``--paper``
(Zoology's Figure 2 protocol). Every layer and option name the arena uses lives here, in a
plugin, never in the core."""

from __future__ import annotations

import attrs

from hybridzoo.arena.presets import ArenaModel, Preset, Reference, Stage

# The layers' option names these presets rely on (one place to change them).
ATTENTION_CONV = {"attention_conv_size": 4}
"""A short causal convolution before attention (the attention plugin's option)."""
ZOOLOGY_ATTENTION = {
    "attention_num_heads": 1,
    "attention_rope_base": None,  # no rotary positions: the LM adds learned ones
    "attention_ffn_expand_factor": 0,  # no feed-forward sub-block
    "attention_qk_norm": False,
    "attention_bias": True,
}
"""Zoology's ICLR attention baseline (its ``MHA``): one head, biases, no QK norm, no rotary
embedding, no feed-forward sub-block."""

CONV_ATTN = ArenaModel(
    pattern="AA",
    label="conv-attn",
    layer_options=ATTENTION_CONV,
    note="two attention layers, each fed by a short causal convolution (kernel 4) of its input: "
    "the Based paper's attention baseline and Zoology's current one",
)
ATTN_ZOOLOGY = ArenaModel(
    pattern="AA",
    label="attn-zoology",
    layer_options=ZOOLOGY_ATTENTION,
    lm_options={"positions": "learned"},
    note="Zoology's ICLR Figure 2 attention: 1 head, learned absolute positions, no "
    "feed-forward sub-block, no convolution",
)
MAMBA_ATTN = ArenaModel(
    pattern="MA",
    label="mamba-attn",
    note="a Mamba layer, then an attention layer (a Jamba-style hybrid: the attention reads "
    "the Mamba layer's output)",
)
MAMBA = ArenaModel(pattern="MM", label="mamba", note="two Mamba layers (fixed state)")
RWKV = ArenaModel(pattern="RR", label="rwkv6", note="two RWKV-6 layers (fixed state)")
GLA = ArenaModel(pattern="GG", label="gla", note="two GLA layers (fixed state)")
MAMBA2 = ArenaModel(pattern="SS", label="mamba2", note="two Mamba-2 layers (fixed state)")
DELTANET = ArenaModel(pattern="DD", label="gdn", note="two Gated DeltaNet layers (fixed state)")

ZOOLOGY = Reference(
    name="Zoology (ICLR 2024), Figure 2",
    sequences_per_run=64 * 100_000,
    learning_rates=4,
    note="vocabulary 8192, widths 64-512, batch 512 (L <= 128), early stop at 0.99",
)

DEFAULT_MODELS = (CONV_ATTN, RWKV, MAMBA)
"""Conv-fed attention against two fixed-state mixers: what fits 30 minutes on 2 CPU cores
(measured: at most 400 steps cost 0.19-0.35 s at L=64 and 0.38-0.71 s at L=128 per step)."""
MQAR_512 = {"vocab_size": 512, "filler": "zero"}

DEFAULT = Preset(
    name="default",
    description="MQAR at L=64 and 128: a learning-rate sweep at L=64, then 3 seeds at both "
    "lengths with each model's best rate (<= 30 min on 2 CPU cores with 2 jobs)",
    models=DEFAULT_MODELS,
    task="mqar",
    task_params=MQAR_512,
    stages=(
        Stage(name="lr sweep", seq_lens=(64,), lrs=(1e-3, 3e-3, 1e-2), seeds=(0,)),
        Stage(name="seeds", seq_lens=(64, 128), seeds=(0, 1, 2)),
    ),
    train={"steps": 400, "batch_size": 128, "eval_every": 50, "eval_examples": 1000},
    reference=ZOOLOGY,
)

QUICK = attrs.evolve(
    DEFAULT,
    name="quick",
    label="smoke test",
    description="a smoke test (<= 3 min on 2 CPU cores): the default models and mamba-attn at "
    "L=64, one learning rate, one seed, 300 steps of batch 64; it checks the install, it "
    "measures nothing",
    models=(*DEFAULT_MODELS, MAMBA_ATTN),
    stages=(Stage(name="smoke", seq_lens=(64,), lrs=(3e-3,), seeds=(0,)),),
    train={"steps": 300, "batch_size": 64, "eval_every": 25, "eval_examples": 256},
)

PAPER = Preset(
    name="paper",
    label="Zoology Figure 2 protocol",
    description="Zoology's ICLR Figure 2 protocol: vocabulary 8192, widths 64-512, 4 learning "
    "rates, 64 epochs over 100k examples, best of 4 (a GPU job: see --dry-run)",
    models=(ATTN_ZOOLOGY, CONV_ATTN, MAMBA, RWKV, GLA, MAMBA2, DELTANET),
    task="mqar",
    task_params={"vocab_size": 8192, "filler": "zero", "power_a": 0.01},
    stages=(
        Stage(
            name="figure 2",
            seq_lens=(64, 128, 256, 512),
            lrs=(1e-4, 10**-3.333, 10**-2.667, 1e-2),  # numpy.logspace(-4, -2, 4)
            seeds=(0,),
        ),
    ),
    train={
        "epochs": 64,
        "train_examples": 100_000,
        "eval_examples": 3_000,
        "warmup_fraction": 0.0,
        "target_accuracy": 0.99,
    },
    batch_sizes={64: 512, 128: 512, 256: 256, 512: 128},
    widths=(64, 128, 256, 512),
    reference=ZOOLOGY,
    figures=("width", "state"),
)

PRESETS = (DEFAULT, QUICK, PAPER)

"""The builtin named patterns: Edifice's six, positions counted 1..n (plugin ``patterns``).

Each is a cycle of layer names (see :class:`hybridzoo.plugin.NamedPattern`); with a layer plugin
disabled or missing, the patterns that use it are listed as unavailable, naming it.
"""

from __future__ import annotations

from hybridzoo.plugin import NamedPattern, hookimpl

M, A, G, R, F = "mamba", "attention", "gla", "rwkv", "ffn"

PATTERNS = (
    NamedPattern("jamba_like", (M, A), "attention at even positions, mamba at odd ones"),
    NamedPattern("zamba_like", (M,), "all mamba (meant for use with a shared attention block)"),
    NamedPattern("mamba_gla", (M, M, G), "gla every 3rd layer, else mamba"),
    NamedPattern("rwkv_attention", (R, R, R, A), "attention every 4th layer, else rwkv"),
    NamedPattern(
        "full_hybrid", (M, A, G, R, M, F), "cycle mamba, attention, gla, rwkv, mamba, ffn"
    ),
    NamedPattern("ssm_stack", (M,), "all mamba"),
)


@hookimpl
def hybridzoo_named_patterns() -> list[NamedPattern]:
    return list(PATTERNS)

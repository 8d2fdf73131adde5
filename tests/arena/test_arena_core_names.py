"""The arena is part of the core: it names no builtin layer, option or pattern of layers (the
default models and presets come from the builtin arena plugin, like any third party's)."""

from __future__ import annotations

import ast
import io
import re
import tokenize
from pathlib import Path

import hybridzoo
from hybridzoo.errors import HybridZooError
from hybridzoo.patterns import resolve_pattern

ARENA = Path(hybridzoo.__file__).parent / "arena"


def _builtin_words() -> set[str]:
    registry = hybridzoo.get_registry()
    words = set()
    for spec in registry.specs():
        if registry.source(spec.name)[0] != "hybridzoo":
            continue
        words |= {spec.name, spec.option_prefix + "_"}
        words |= set(spec.option_names())
    return words


def _is_builtin_pattern(text: str) -> bool:
    if not re.fullmatch(r"[A-Z][A-Z0-9 ()*]+", text):
        return False
    try:
        resolve_pattern(text)
    except HybridZooError:
        return False
    return True


def test_the_arena_names_no_builtin_layer_option_or_pattern() -> None:
    words = _builtin_words()
    assert {"attention", "mamba", "attention_window_size"} <= words
    found = []
    for path in sorted(ARENA.glob("*.py")):
        text = path.read_text()
        lowered = text.lower()
        for word in words:
            for match in re.finditer(rf"(?<![a-z0-9_]){re.escape(word)}(?![a-z0-9])", lowered):
                line = text.count("\n", 0, match.start()) + 1
                found.append(f"{path.name}:{line}: {word!r}")
        for token in tokenize.generate_tokens(io.StringIO(text).readline):
            if token.type == tokenize.STRING:
                value = "" if token.string[:1] in "fFrRbB" else ast.literal_eval(token.string)
                if isinstance(value, str) and _is_builtin_pattern(value):
                    found.append(f"{path.name}:{token.start[0]}: pattern {value!r}")
    assert not found, "builtin names in the arena core:\n" + "\n".join(found)

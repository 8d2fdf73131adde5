"""The arena page's python blocks run verbatim, in order, in one namespace (a fresh task registry,
a temporary folder): the examples of docs/arena.md are true."""

from __future__ import annotations

import re
from pathlib import Path

from hybridzoo.arena.plugins import ArenaRegistry, use_arena_registry

PAGE = Path(__file__).resolve().parents[2] / "docs" / "arena.md"


def test_the_python_blocks_of_the_arena_page_run(tmp_path: Path, monkeypatch) -> None:
    blocks = re.findall(r"^```python\n(.*?)^```", PAGE.read_text(), flags=re.M | re.S)
    assert len(blocks) >= 2
    monkeypatch.chdir(tmp_path)
    namespace: dict = {"__name__": "__docs__"}
    with use_arena_registry(ArenaRegistry()):
        for code in blocks:
            exec(compile(code, str(PAGE), "exec"), namespace)
        assert namespace["make_task"]("parity").chance_level == 0.5
    assert (tmp_path / "arena-example" / "results.json").exists()

"""The documentation is true: every ```python block of ``docs/*.md`` runs verbatim, every link
points into the repository, and the kit's contract list matches the kit.

A page's python blocks run in order in one namespace (a page builds its example step by step), in
a fresh interpreter per page (a page that registers a layer does not leak it into another), in a
temporary folder. A block that is not meant to run is marked on the line before it with
``<!-- not run: REASON -->``; such blocks are few, and each says why.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
#: Pages whose blocks their owner's tests run (the arena page's examples train models).
OWNED_ELSEWHERE = {"arena.md"}
README = ROOT / "README.md"
#: The README's examples run too: a newcomer copies them first.
PAGES = [*sorted(p for p in DOCS.glob("*.md") if p.name not in OWNED_ELSEWHERE), README]
NOT_RUN = re.compile(r"^<!-- not run: (.+?) -->$")
#: At most this many blocks in all the pages may be marked as not run.
MAX_NOT_RUN = 3

_FENCE = re.compile(r"^```(\w*)\s*$")
_LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")

_RUNNER = """
import json, sys, traceback, warnings
page, blocks = sys.argv[1], json.load(open(sys.argv[2]))
namespace = {"__name__": "__docs__"}
warnings.filterwarnings("error", category=DeprecationWarning, module="__docs__")
for line, code in blocks:
    try:
        exec(compile("\\n" * (line - 1) + code, page, "exec"), namespace)
    except BaseException:
        traceback.print_exc()
        print(f"the python block at {page}:{line} failed", file=sys.stderr)
        sys.exit(1)
"""


def code_blocks(text: str) -> list[tuple[str, int, str, str | None]]:
    """``(language, first line of code, code, not-run reason)`` for each fenced block."""
    lines = text.splitlines()
    out, i = [], 0
    while i < len(lines):
        m = _FENCE.match(lines[i])
        if m is None:
            i += 1
            continue
        marker = NOT_RUN.match(lines[i - 1].strip()) if i else None
        end = next(j for j in range(i + 1, len(lines)) if lines[j].startswith("```"))
        out.append((m.group(1), i + 2, "\n".join(lines[i + 1 : end]) + "\n", marker and marker[1]))
        i = end + 1
    return out


def test_there_are_pages_with_python() -> None:
    assert {"conformance.md", "plugin-authoring.md", "plugin-api.md", "design.md"} <= {
        p.name for p in PAGES
    }
    assert sum(lang == "python" for p in PAGES for lang, *_ in code_blocks(p.read_text())) >= 15


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_the_python_blocks_of_a_page_run_verbatim(page: Path, tmp_path: Path) -> None:
    blocks = [
        (line, code)
        for lang, line, code, reason in code_blocks(page.read_text())
        if lang == "python" and reason is None
    ]
    if not blocks:
        pytest.skip(f"{page.name} has no python block")
    (tmp_path / "blocks.json").write_text(json.dumps(blocks))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, "-c", _RUNNER, str(page.relative_to(ROOT)), str(tmp_path / "blocks.json")],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-4000:]


def test_blocks_not_run_are_few_and_say_why() -> None:
    marked = [
        (page.name, line, reason)
        for page in PAGES
        for _, line, _, reason in code_blocks(page.read_text())
        if reason is not None
    ]
    assert len(marked) <= MAX_NOT_RUN, marked
    assert all(len(reason) > 10 for *_, reason in marked), marked


def _anchors(path: Path) -> set[str]:
    """GitHub's anchors of a page's headings."""
    out = set()
    for line in path.read_text().splitlines():
        if line.startswith("#"):
            title = line.lstrip("#").strip().lower()
            out.add(re.sub(r"[^\w\- ]", "", title).replace(" ", "-"))
    return out


def test_every_link_points_into_the_repository() -> None:
    problems = []
    for page in [*sorted(DOCS.glob("*.md")), README]:
        prose = re.sub(
            r"`[^`\n]*`", "", re.sub(r"^```.*?^```", "", page.read_text(), flags=re.M | re.S)
        )
        for target in _LINK.findall(prose):
            if re.match(r"^[a-z]+:", target):
                continue  # an external address
            path, _, anchor = target.partition("#")
            resolved = (page.parent / path).resolve() if path else page
            if not resolved.exists():
                problems.append(f"{page.name}: {target} (no such file)")
            elif anchor and resolved.suffix == ".md" and anchor not in _anchors(resolved):
                problems.append(f"{page.name}: {target} (no such heading)")
    assert not problems, "\n".join(problems)


def test_no_page_cites_a_design_document_outside_the_repository() -> None:
    sources = [*DOCS.glob("*.md"), *(ROOT / "hybridzoo").rglob("*.py")]
    cited = [str(p.relative_to(ROOT)) for p in sources if "DESIGN.md" in p.read_text()]
    assert not cited, cited


def test_the_contract_list_is_the_kits() -> None:
    from hybridzoo.testing import CHECKS, CONTRACTS

    text = (DOCS / "conformance.md").read_text()
    contracts = text.split("## The contracts")[1].split("\n## ")[0]
    listed = re.findall(r"^\| `(\w+)` \| (.+) \| (.+) \|$", contracts, flags=re.M)
    assert [name for name, *_ in listed] == list(CONTRACTS)
    for name, _, checks in listed:
        assert re.findall(r"`(\w+)`", checks) == [
            c.name for c in CHECKS.values() if c.contract == name
        ], name
    checks = text.split("## The checks")[1].split("\n## ")[0]
    rows = re.findall(r"^\| `(\w+)` \| `(\w+)` \|", checks, flags=re.M)
    assert rows == [(name, check.contract) for name, check in CHECKS.items()]


def test_the_not_run_marker_is_read_from_the_line_before_a_block() -> None:
    text = (
        "intro\n```python\nx = 1\n```\n"
        "<!-- not run: it needs an installed plugin named mylayer -->\n```python\nbuild()\n```\n"
        "```bash\nls\n```\n"
    )
    assert code_blocks(text) == [
        ("python", 3, "x = 1\n", None),
        ("python", 7, "build()\n", "it needs an installed plugin named mylayer"),
        ("bash", 10, "ls\n", None),
    ]

"""``hybridzoo new-plugin``: the generated distribution is complete and its layer passes the kit.

The real walk (a fresh virtual environment, ``pip install -e``, ``hybridzoo check-plugin``, the
generated tests) is too slow for every run: it is ``scripts/check_scaffold.sh``. Here the
generated package is imported from ``tmp_path`` through ``sys.path``, its spec is registered in an
isolated registry and the kit runs on it; a ``.dist-info`` written from the generated
``pyproject.toml`` (what pip would write) shows that its entry point is discovered.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

import hybridzoo
from hybridzoo import Registry
from hybridzoo.scaffold import FILES, main, options_table, plan

NAME = "scaffoldtest"
PACKAGE = f"hybridzoo_{NAME}"
DIST = "hybridzoo-scaffoldtest"
EXPECTED_FILES = {
    ".gitignore",
    "README.md",
    "pyproject.toml",
    f"{PACKAGE}/__init__.py",
    f"{PACKAGE}/formulas.py",
    f"{PACKAGE}/layer.py",
    f"{PACKAGE}/reference.py",
    f"tests/test_{NAME}.py",
}

tomllib = pytest.importorskip("tomllib") if sys.version_info >= (3, 11) else None


@pytest.fixture
def generated(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    target = tmp_path / "plugin"
    assert main([NAME, "--dir", str(target)]) == 0
    capsys.readouterr()
    return target


@pytest.fixture
def imported(generated: Path, monkeypatch: pytest.MonkeyPatch):
    """The generated package, imported from ``tmp_path`` (and forgotten afterwards)."""
    monkeypatch.syspath_prepend(str(generated))
    for mod in [m for m in sys.modules if m == PACKAGE or m.startswith(PACKAGE + ".")]:
        monkeypatch.delitem(sys.modules, mod)
    module = importlib.import_module(PACKAGE)
    yield module
    for mod in [m for m in sys.modules if m == PACKAGE or m.startswith(PACKAGE + ".")]:
        del sys.modules[mod]


def files_of(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}


# -- the files -------------------------------------------------------------------------------------


def test_generates_every_file(generated: Path) -> None:
    assert files_of(generated) == EXPECTED_FILES
    assert len(FILES) == len(EXPECTED_FILES)
    for rel in EXPECTED_FILES:
        text = (generated / rel).read_text()
        assert "{{" not in text and "}}" not in text, f"unrendered placeholder in {rel}"
        if rel.endswith(".py"):
            ast.parse(text, filename=rel)


@pytest.mark.skipif(tomllib is None, reason="tomllib needs Python >= 3.11")
def test_pyproject_declares_the_entry_point(generated: Path) -> None:
    data = tomllib.loads((generated / "pyproject.toml").read_text())
    project = data["project"]
    assert project["name"] == DIST
    assert project["entry-points"]["hybridzoo.layers"] == {NAME: PACKAGE}
    assert any(dep.startswith("hybridzoo>=") for dep in project["dependencies"])
    assert data["build-system"]["build-backend"] == "setuptools.build_meta"
    assert data["tool"]["setuptools"]["packages"] == [PACKAGE]
    assert "pytest>=8" in project["optional-dependencies"]["test"]
    pytest_options = data["tool"]["pytest"]["ini_options"]
    assert "-p hybridzoo.testing.pytest_plugin" in pytest_options["addopts"]


def test_readme_and_tests_name_the_layer(generated: Path) -> None:
    made = plan(NAME, generated.parent / "other")
    readme = (generated / "README.md").read_text()
    assert f"# {DIST}" in readme and f"`{NAME}`" in readme and f"`{made.symbol}`" in readme
    test_file = (generated / f"tests/test_{NAME}.py").read_text()
    assert "parametrize_with_checks(SPEC)" in test_file


def test_prints_what_it_made_and_the_next_steps(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([NAME, "--dir", str(tmp_path / "p"), "--symbol", "Z"]) == 0
    out = capsys.readouterr().out
    assert "hybridzoo-scaffoldtest" in out and "symbol 'Z'" in out
    assert f"{PACKAGE}/layer.py" in out
    assert "pip install -e" in out and f"hybridzoo check-plugin {NAME}" in out


def test_generated_code_is_lint_clean(generated: Path) -> None:
    if importlib.util.find_spec("ruff") is None:
        pytest.skip("ruff is not installed (pip install -e '.[test]')")
    for args in (["check", "."], ["format", "--check", "."]):
        done = subprocess.run(
            [sys.executable, "-m", "ruff", *args], cwd=generated, capture_output=True, text=True
        )
        assert done.returncode == 0, done.stdout + done.stderr


def test_each_option_is_declared_once(generated: Path, imported) -> None:
    """The options record declares every option; the formulas, ``make_bodies`` and the module
    take the record (no keyword defaults, no ``**kwargs`` in the formulas); the README's table
    is the spec's."""
    init = (generated / PACKAGE / "__init__.py").read_text()
    formulas = (generated / PACKAGE / "formulas.py").read_text()
    layer = (generated / PACKAGE / "layer.py").read_text()
    assert init.count(" = option(") == 2
    tree = ast.parse(formulas)
    for fn in [n for n in tree.body if isinstance(n, ast.FunctionDef)]:
        assert [a.arg for a in fn.args.args] == ["o", "hidden_size"], fn.name
        assert not fn.args.defaults and fn.args.kwarg is None, fn.name
    assert "**" not in formulas
    make = layer[layer.index("def make_bodies") :]
    assert "(hidden_size, o)" in make and "**" not in make
    init_fn = next(n for n in ast.walk(ast.parse(layer)) if getattr(n, "name", "") == "__init__")
    assert [a.arg for a in init_fn.args.args] == ["self", "hidden_size", "options"]
    assert not init_fn.args.kwonlyargs and "resolve_options" in layer
    assert imported.SPEC.factory.target == "hybridzoo_scaffoldtest.layer:make_bodies"
    assert imported.SPEC.reference.target == "hybridzoo_scaffoldtest.reference:reference_forward"
    assert imported.hybridzoo_layer_specs() == [imported.SPEC]


def test_the_readme_table_is_produced_from_the_spec(generated: Path, imported) -> None:
    readme = (generated / "README.md").read_text()
    table = options_table(imported.SPEC)
    assert table in readme
    assert f"| `{NAME}_kernel_size` | `4` | Positions each output sees" in table
    assert f"| `{NAME}_expand` | `2` | Inner width" in table
    assert "{{" not in readme


def test_the_generated_readme_check_catches_a_stale_table(generated: Path, imported, monkeypatch):
    monkeypatch.syspath_prepend(str(generated / "tests"))
    module = importlib.import_module(f"test_{NAME}")
    try:
        module.test_the_readme_lists_every_option()
        readme = generated / "README.md"
        readme.write_text(readme.read_text().replace("| `4` |", "| `8` |"))
        with pytest.raises(AssertionError, match="options table is out of date"):
            module.test_the_readme_lists_every_option()
    finally:
        del sys.modules[f"test_{NAME}"]


# -- the layer -------------------------------------------------------------------------------------


def test_the_kit_passes_on_the_generated_layer(imported) -> None:
    from hybridzoo.testing import run_checks

    registry = Registry(autoload=False)
    registry.register(imported.SPEC)
    results = run_checks(NAME, registry=registry)
    failed = [f"{r.check}: {r.reason}" for r in results if r.failed]
    assert not failed, "\n".join(failed)
    assert {r.check for r in results if r.passed} >= {
        "param_count_exact",
        "causal",
        "step_equals_parallel",
        "prefill_then_step",
        "reference_matches",
        "state_size_formula",
    }


def test_generated_kernel_size_one_has_an_empty_state(imported) -> None:
    from hybridzoo.testing import run_checks

    registry = Registry(autoload=False)
    registry.register(imported.SPEC)
    results = run_checks(
        NAME,
        registry=registry,
        options={"kernel_size": 1, "expand": 1},
        checks=["step_equals_parallel", "prefill_then_step", "state_size_formula"],
    )
    assert all(r.passed for r in results), [r.reason for r in results]


def test_entry_point_discovery_and_a_mixed_build(
    generated: Path, imported, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Write the ``.dist-info`` that ``pip install -e`` would write, from the generated
    pyproject's entry point; a fresh registry finds the layer and mixes it with a builtin."""
    import torch

    site = tmp_path / "site"
    info = site / f"{DIST.replace('-', '_')}-0.1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {DIST}\nVersion: 0.1.0\n")
    (info / "entry_points.txt").write_text(f"[hybridzoo.layers]\n{NAME} = {PACKAGE}\n")
    monkeypatch.syspath_prepend(str(site))
    registry = Registry(strict=False)
    assert registry.source(NAME) == (DIST, "0.1.0")
    symbol = registry.get(NAME).symbol
    with hybridzoo.use_registry(registry):
        pattern = f"F {symbol} F"
        model = hybridzoo.build(pattern, embed_dim=8, hidden_size=16, dropout=0.0)
        model.eval()
        x = torch.randn(2, 6, 8)
        assert model.param_count() == hybridzoo.param_count(pattern, embed_dim=8, hidden_size=16)
        seq = hybridzoo.build(
            pattern, embed_dim=8, hidden_size=16, dropout=0.0, output="sequence"
        ).eval()
        seq.load_state_dict(model.state_dict())
        state = seq.init_state(2)
        steps = torch.stack([seq.step(x[:, t], state)[0] for t in range(6)], dim=1)
        torch.testing.assert_close(steps, seq(x))


def test_generated_package_imports_without_torch(generated: Path) -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(generated), *sys.path])}
    code = f"import sys, {PACKAGE}; print('torch' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"


# -- refusals --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("MyLayer", "lower-case identifier"),
        ("1conv", "lower-case identifier"),
        ("long-conv", "lower-case identifier"),
        ("", "lower-case identifier"),
        ("class", "Python keyword"),
        ("ffn", "already registered"),
    ],
)
def test_bad_names_are_refused(
    name: str, message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "p"
    assert main([name, "--dir", str(target)]) == 2
    err = capsys.readouterr().err
    assert message in err and repr(name) in err
    assert not target.exists()


@pytest.mark.parametrize(
    ("symbol", "message"),
    [
        ("F", "already used"),
        ("12", "one ASCII letter"),
        ("1", "a letter"),
        ("z", "an uppercase letter A-Z, got 'z' (try 'Z')"),
        ("Ｚ", "one ASCII letter"),
    ],
)
def test_bad_symbols_are_refused(
    symbol: str, message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([NAME, "--dir", str(tmp_path / "p"), "--symbol", symbol]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "p").exists()


def test_never_overwrites(generated: Path, capsys: pytest.CaptureFixture[str]) -> None:
    layer = generated / PACKAGE / "layer.py"
    layer.write_text("# my own work\n")
    assert main([NAME, "--dir", str(generated)]) == 2
    assert "never overwrites" in capsys.readouterr().err
    assert layer.read_text() == "# my own work\n"
    a_file = generated / "README.md"
    assert main([NAME, "--dir", str(a_file)]) == 2


def test_an_empty_folder_and_the_default_folder_are_fine(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "empty").mkdir()
    assert main([NAME, "--dir", str(tmp_path / "empty")]) == 0
    assert (tmp_path / "empty" / "pyproject.toml").is_file()
    monkeypatch.chdir(tmp_path)
    assert main([NAME]) == 0
    assert files_of(tmp_path / DIST) == EXPECTED_FILES


def test_default_symbol_is_free() -> None:
    taken = {spec.symbol for spec in hybridzoo.get_registry().specs()}
    made = plan("fancy", "unused-dir")
    assert made.symbol not in taken
    assert made.symbol.isupper()

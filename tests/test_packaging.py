"""The wheel ships every builtin plugin folder, the C++ sources and headers of the kernels and the
scaffold templates, with one entry point per builtin plugin (nothing is listed by hand): a new
builtin is its folder plus its entry-point line, which the test proves by adding a probe plugin
and a probe kernel folder to a copy of the tree."""

from __future__ import annotations

import configparser
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ("*.cpp", "*.cc", "*.h", "*.hpp", "*.cu", "*.cuh", "*.tmpl")


def test_the_wheel_holds_every_builtin_and_its_data(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "setup.py", "README.md"):
        shutil.copy(ROOT / name, src / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.so", "*.egg-info", "build")
    for folder in ("hybridzoo", "plugins"):
        shutil.copytree(ROOT / folder, src / folder, ignore=ignore)
    # a new builtin: its folder and its entry-point line, nothing else; a new kernel's sources
    (src / "plugins" / "zz_probe").mkdir()
    (src / "plugins" / "zz_probe" / "__init__.py").write_text('"""A probe."""\n')
    pyproject = (src / "pyproject.toml").read_text()
    group = '[project.entry-points."hybridzoo.layers"]\n'
    assert group in pyproject
    pyproject = pyproject.replace(group, group + 'zz_probe = "hybridzoo_plugins.zz_probe"\n')
    (src / "pyproject.toml").write_text(pyproject)
    probe = src / "hybridzoo" / "ops" / "zz_probe"
    (probe / "csrc").mkdir(parents=True)
    for name in ("__init__.py", "csrc/vec.h", "csrc/scan.cpp"):
        (probe / name).write_text("")
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", ".", "--no-deps", "--no-build-isolation", "-q",
         "-w", str(tmp_path / "dist")],
        cwd=src, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert built.returncode == 0, built.stderr
    (wheel,) = (tmp_path / "dist").glob("*.whl")
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        (entry_points,) = [n for n in names if n.endswith(".dist-info/entry_points.txt")]
        parser = configparser.ConfigParser()
        parser.read_string(zf.read(entry_points).decode())
    expected = {
        f"hybridzoo/{p.relative_to(src / 'hybridzoo')}" for p in (src / "hybridzoo").rglob("*.py")
    }
    plugin_files = [p.relative_to(src / "plugins") for p in (src / "plugins").rglob("*.py")]
    expected |= {f"hybridzoo_plugins/{p}" for p in plugin_files}
    expected |= {
        f"hybridzoo/{p.relative_to(src / 'hybridzoo')}"
        for pattern in DATA
        for p in (src / "hybridzoo").rglob(pattern)
    }
    assert not expected - names, f"missing from the wheel: {sorted(expected - names)}"
    assert {"hybridzoo_plugins/zz_probe/__init__.py", "hybridzoo/ops/zz_probe/csrc/vec.h"} <= names
    groups = ("hybridzoo.layers", "hybridzoo.tasks")  # layer plugins and arena plugins
    targets = [t for group in groups for t in dict(parser[group]).values()]
    folders = {p.parent.name for p in (src / "plugins").glob("*/__init__.py")}
    assert sorted(targets) == sorted(f"hybridzoo_plugins.{f}" for f in folders), (
        "every builtin plugin folder needs exactly one entry-point line in pyproject.toml"
    )

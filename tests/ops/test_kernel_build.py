"""Building the compiled kernels: the cache directory (private, refused when others can write it),
the one line printed on a fresh compile, torch's CUDA_HOME notice silenced, the shipped sources.

Nothing here compiles: the compiler call (``build._compile``) is replaced where a build would run.
"""

from __future__ import annotations

import logging
import os
import stat
import sys
import warnings
from pathlib import Path

import pytest
import torch

from hybridzoo.ops.selective_scan import build, kernel_cache_dir, selective_scan_backend
from hybridzoo.ops.selective_scan import fused as fused_module

posix_only = pytest.mark.skipif(not hasattr(os, "getuid"), reason="POSIX owners and modes only")


def private_dir(path: Path, mode: int = 0o700) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    path.chmod(mode)
    return path


@pytest.fixture
def cache_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty private TORCH_EXTENSIONS_DIR, and a compiler call that fails the test."""
    root = private_dir(tmp_path / "extensions")
    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", str(root))

    def no_compile(*args, **kwargs):
        raise AssertionError("the kernels were compiled")

    monkeypatch.setattr(build, "_compile", no_compile)
    return root


def test_cache_dir_follows_torch_extensions_dir(cache_root):
    where = kernel_cache_dir()
    assert where.parent == cache_root.resolve()
    assert where.name.startswith("hybridzoo_selective_scan_")


@posix_only
@pytest.mark.parametrize(
    ("mode", "who"), [(0o770, "its group"), (0o707, "other users"), (0o777, "its group and other")]
)
def test_cache_writable_by_others_is_refused(tmp_path, mode, who):
    cache = private_dir(tmp_path / "cache", mode)
    with pytest.raises(build.UnsafeCacheError, match=f"writable by {who}") as info:
        build.check_cache_dir(cache)
    assert f"chmod go-w {cache}" in str(info.value)
    assert "TORCH_EXTENSIONS_DIR" in str(info.value)


@posix_only
def test_cache_entries_and_parents_are_checked(tmp_path):
    cache = private_dir(tmp_path / "shared" / "cache")
    build.check_cache_dir(cache)  # private: accepted
    library = cache / "kernels.so"
    library.write_bytes(b"")
    library.chmod(0o666)
    with pytest.raises(build.UnsafeCacheError, match=r"kernels\.so is writable by its group"):
        build.check_cache_dir(cache)
    library.chmod(0o600)
    build.check_cache_dir(cache)
    (tmp_path / "shared").chmod(0o777)  # a parent others can write: they could swap the cache
    with pytest.raises(build.UnsafeCacheError, match="without the sticky bit"):
        build.check_cache_dir(cache)
    (tmp_path / "shared").chmod(0o1777)  # as /tmp: others cannot rename what is ours
    build.check_cache_dir(cache)
    build.check_cache_dir(tmp_path / "shared" / "missing" / "cache")  # not created yet: fine


@posix_only
@pytest.mark.skipif(not hasattr(os, "getuid") or os.getuid() != 0, reason="needs root to chown")
def test_cache_owned_by_someone_else_is_refused(tmp_path):
    cache = private_dir(tmp_path / "cache")
    os.chown(cache, 4242, -1)
    with pytest.raises(build.UnsafeCacheError, match="belongs to uid 4242"):
        build.check_cache_dir(cache)


@posix_only
def test_unsafe_cache_falls_back_to_torch_once_with_the_fix(cache_root, monkeypatch):
    cache_root.chmod(0o777)
    monkeypatch.delenv("HYBRIDZOO_NO_COMPILE", raising=False)
    monkeypatch.setattr(fused_module, "_EXTENSION", fused_module._Extension())
    with pytest.warns(RuntimeWarning, match="pure-torch backend") as record:
        assert selective_scan_backend() == "torch"
    message = str(record[0].message)
    assert str(cache_root) in message and "chmod go-w" in message
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # once only
        assert selective_scan_backend() == "torch"
    assert "writable by its group and other users" in fused_module.extension_error()


@posix_only
def test_first_compile_prints_one_line_to_stderr(tmp_path, monkeypatch, capfd):
    root = tmp_path / "new" / "extensions"  # missing: created private
    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", str(root))
    calls = []

    def fake_compile(name, sources, directory, cflags, ldflags):
        calls.append(sources)
        (directory / f"{name}.so").write_bytes(b"")

    monkeypatch.setattr(build, "_compile", fake_compile)
    ops = build.build_extension()
    assert ops is torch.ops.hybridzoo_selective_scan
    out, err = capfd.readouterr()
    assert out == ""
    lines = err.splitlines()
    assert len(lines) == 1, lines
    assert "compiled the selective-scan kernels in" in lines[0]
    assert str(kernel_cache_dir()) in lines[0]
    for made in (root.parent, root, kernel_cache_dir()):
        assert stat.S_IMODE(made.stat().st_mode) == 0o700
    # every source of csrc/ is compiled; a later build finds the library and prints nothing
    assert sorted(Path(s).name for s in calls[0]) == sorted(
        p.name for p in build.CSRC.glob("*.cpp")
    )
    build.build_extension()
    assert capfd.readouterr() == ("", "")


def test_cuda_home_notice_is_silenced(monkeypatch, tmp_path, caplog, capfd):
    """A CUDA wheel on a machine without GPU logs "No CUDA runtime is found, using CUDA_HOME=..."
    when torch.utils.cpp_extension is imported; the kernels' import drops that line only."""
    original = build._filtered_stderr_import()
    monkeypatch.setitem(sys.modules, "torch.utils.cpp_extension", original)  # restored after
    monkeypatch.setattr(torch.utils, "cpp_extension", original)
    monkeypatch.setattr(torch.cuda, "_is_compiled", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.version, "cuda", "12.1")
    monkeypatch.setenv("CUDA_HOME", str(tmp_path))

    def reimport(fn):
        sys.modules.pop("torch.utils.cpp_extension", None)
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="torch.utils.cpp_extension"):
            fn()
        return caplog.text + "".join(capfd.readouterr())

    plain = reimport(lambda: __import__("torch.utils.cpp_extension"))
    assert "No CUDA runtime is found" in plain  # the simulation reproduces the notice
    assert "No CUDA runtime is found" not in reimport(build._filtered_stderr_import)


def test_package_data_ships_every_source():
    """pyproject's package data matches every file of csrc/ (a missing header breaks wheels)."""
    tomllib = pytest.importorskip("tomllib")
    root = Path(__file__).parents[2]
    data = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]
    shipped = set()
    for package, globs in data["package-data"].items():
        if "hybridzoo.ops.selective_scan".startswith(package):  # this package or a parent
            folder = root / package.replace(".", "/")
            shipped |= {p for pattern in globs for p in folder.glob(pattern)}
    sources = {p for p in build.CSRC.iterdir() if p.is_file()}
    assert sources and sources <= shipped, f"not shipped: {sorted(sources - shipped)}"


def test_a_stale_build_lock_is_removed_and_a_fresh_one_kept(tmp_path) -> None:
    # before: a compile killed midway left `lock` behind and every later build waited forever
    import time

    from hybridzoo.ops.selective_scan.build import STALE_LOCK_SECONDS, clear_stale_lock

    lock = tmp_path / "lock"
    assert clear_stale_lock(tmp_path) is False  # no lock: nothing to do
    lock.touch()
    assert clear_stale_lock(tmp_path) is False and lock.exists()  # a build in progress
    old = time.time() - STALE_LOCK_SECONDS - 60
    os.utime(lock, (old, old))
    with pytest.warns(RuntimeWarning, match=f"removed a stale kernel build lock {lock}"):
        assert clear_stale_lock(tmp_path) is True
    assert not lock.exists()

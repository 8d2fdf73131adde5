"""The compiled backend of the gated linear recurrence: where it is cached and when it refuses to
load, and how backends are chosen. (Its numbers are tested with the family's properties.)"""

from __future__ import annotations

import os
import stat

import pytest
import torch

from hybridzoo.errors import OptionError
from hybridzoo.ops import _compile
from hybridzoo.ops.gla import compiled


def test_the_cache_is_private_to_the_user(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("HYBRIDZOO_KERNEL_CACHE", str(tmp_path / "kernels"))
    assert _compile.cache_root() == tmp_path / "kernels"
    made = _compile.private_directory(_compile.cache_root())
    assert stat.S_IMODE(made.stat().st_mode) & 0o077 == 0
    shared = tmp_path / "shared"
    shared.mkdir()
    os.chmod(shared, 0o777)
    with pytest.raises(PermissionError, match="writable by group or others"):
        _compile.private_directory(shared)
    (tmp_path / "file").write_text("x")
    with pytest.raises(PermissionError, match="not a directory"):
        _compile.private_directory(tmp_path / "file")


def test_a_kernel_in_a_shared_cache_is_refused_and_torch_runs(tmp_path, monkeypatch) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    os.chmod(shared, 0o777)
    monkeypatch.setenv("HYBRIDZOO_KERNEL_CACHE", str(shared))
    kernel = _compile.Kernel(compiled.KERNEL.source, "hybridzoo_linear_recurrence")
    with pytest.warns(RuntimeWarning, match="pure-torch backend"):
        assert kernel.load() is None
    assert "writable by group or others" in kernel.error
    monkeypatch.setattr(compiled, "KERNEL", kernel)
    assert compiled.resolve_backend("auto", torch.device("cpu")) == "torch"
    with pytest.raises(RuntimeError, match="unavailable"):
        compiled.resolve_backend("compiled", torch.device("cpu"))


def test_backend_choice(monkeypatch) -> None:
    cpu = torch.device("cpu")
    assert compiled.resolve_backend("torch", cpu) == "torch"
    with pytest.raises(OptionError, match="backend must be one of"):
        compiled.resolve_backend("cuda", cpu)
    monkeypatch.setenv("HYBRIDZOO_NO_COMPILE", "1")
    assert compiled.resolve_backend("auto", cpu) == "torch"
    with pytest.raises(OptionError, match="HYBRIDZOO_NO_COMPILE"):
        compiled.resolve_backend("compiled", cpu)
    with pytest.raises(OptionError, match="tensors are on meta"):
        monkeypatch.delenv("HYBRIDZOO_NO_COMPILE")
        compiled.resolve_backend("compiled", torch.device("meta"))

"""The compiled backend of the gated linear recurrence: where it is cached and when it refuses to
load, and how backends are chosen. (Its numbers are tested with the family's properties.)"""

from __future__ import annotations

import os

import pytest
import torch

from hybridzoo.errors import OptionError
from hybridzoo.ops import _compile
from hybridzoo.ops.gla import compiled


def test_a_kernel_in_a_shared_cache_is_refused_and_torch_runs(tmp_path, monkeypatch) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    os.chmod(shared, 0o777)
    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", str(shared))
    assert _compile.cache_root() == shared
    kernel = _compile.Kernel(compiled.KERNEL.source, "hybridzoo_linear_recurrence")
    with pytest.warns(RuntimeWarning, match="pure-torch backend"):
        assert kernel.load() is None
    assert "writable by" in kernel.error and str(shared) in kernel.error
    assert not any(shared.iterdir())  # refused before anything was created or compiled
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

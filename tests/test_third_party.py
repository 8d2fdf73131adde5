"""A third-party plugin, installed like any other, mixes with the builtins.

``examples/retention`` is a separate distribution (``hybridzoo-retention``, layer ``retention``,
symbol ``T``) that ``.ci/run`` installs with ``pip install -e examples/retention``. Nothing here
imports it: a fresh :class:`hybridzoo.Registry` finds it through its entry point alone.
"""

from __future__ import annotations

import importlib.util

import pytest
import torch

import hybridzoo
from hybridzoo import HybridConfig, Registry

if importlib.util.find_spec("hybridzoo_retention") is None:
    pytest.skip(
        "the third-party example is not installed: pip install -e examples/retention",
        allow_module_level=True,
    )

SMALL = {
    "retention_num_heads": 2,
    "retention_head_dim": 8,
    "retention_chunk_size": 4,
    "retention_ffn_expand_factor": 1,
}


@pytest.fixture
def registry() -> Registry:
    registry = Registry(strict=False)
    with hybridzoo.use_registry(registry):
        yield registry


def test_found_through_its_entry_point(registry: Registry) -> None:
    assert registry.source("retention") == ("hybridzoo-retention", "0.1.0")
    spec = registry.resolve("T")
    assert (spec.name, spec.option_prefix) == ("retention", "retention")
    (record,) = [p for p in registry.plugins() if p.name == "retention"]
    assert (record.distribution, record.status, record.layers) == (
        "hybridzoo-retention",
        "loaded",
        ["retention"],
    )


@pytest.mark.parametrize("pattern", ["M T A", "T F T"])
def test_hybrid_with_builtins_steps_like_forward(registry: Registry, pattern: str) -> None:
    torch.manual_seed(0)
    kwargs = dict(embed_dim=8, hidden_size=32, dropout=0.0, output="sequence", **SMALL)
    model = hybridzoo.build(pattern, **kwargs).double().eval()
    assert model.param_count() == hybridzoo.param_count(pattern, **kwargs)
    assert "T=retention" in hybridzoo.visualize(pattern)
    x = torch.randn(2, 9, 8, dtype=torch.float64)
    with torch.no_grad():
        full = model(x)
        state = model.init_state(2)
        steps = torch.stack([model.step(x[:, t], state)[0] for t in range(9)], dim=1)
        head, state = model.prefill(x[:, :5])
        tail = torch.stack([model.step(x[:, t], state)[0] for t in range(5, 9)], dim=1)
    torch.testing.assert_close(steps, full, rtol=1e-9, atol=1e-10)
    torch.testing.assert_close(torch.cat([head, tail], dim=1), full, rtol=1e-9, atol=1e-10)


def test_config_round_trip_with_the_plugin(registry: Registry, tmp_path) -> None:
    model = hybridzoo.build("T F T", embed_dim=8, hidden_size=32, retention_value_factor=1)
    again = HybridConfig.from_dict(model.config.to_dict())
    assert again == model.config
    model.save(tmp_path / "m")
    loaded = hybridzoo.HybridModel.load(tmp_path / "m")
    x = torch.randn(1, 5, 8)
    model.eval()
    loaded.eval()
    torch.testing.assert_close(loaded(x), model(x))

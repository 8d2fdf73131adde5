"""Properties of whole models over random patterns (from the registry), options and shapes.

Patterns, layer options (from each field's examples), hidden sizes (multiples of every layer's
``hidden_size_multiple``), input projections (``embed_dim != hidden_size``) and shared blocks are
drawn by :func:`hybridzoo.testing.strategies.model_configs`; comparisons are in float64 with the
kit's tolerances unless they are exact by construction.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterator

import attrs
import pytest
import torch
from hypothesis import assume, given
from hypothesis import strategies as st

import hybridzoo
from hybridzoo import HybridConfig, OptionError
from hybridzoo.model import HybridModel
from hybridzoo.model_options import MODEL_OPTIONS
from hybridzoo.testing import assert_close
from hybridzoo.testing import strategies as hzst

STATEFUL = [s.name for s in hybridzoo.get_registry().specs() if s.capabilities.stateful]
#: step-mode models mix at least two layer types when two exist
MIX = min(2, len(STATEFUL))

small_inputs = {"batch": st.integers(1, 2), "length": st.integers(1, 7)}


@pytest.fixture(autouse=True, scope="module")
def one_thread() -> Iterator[None]:
    """Tiny tensors: intra-op threads only add overhead (much more on a busy machine)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def build(
    config: HybridConfig, *, seed: int = 0, dtype: torch.dtype = torch.float64
) -> HybridModel:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = HybridModel(config)
    return model.to(dtype).eval()


@given(config=hzst.model_configs(), data=st.data())
def test_build_gives_the_right_output_shapes(config: HybridConfig, data: st.DataObject) -> None:
    model = build(config)
    x = data.draw(hzst.inputs(hidden=config.embed_dim, **small_inputs), label="x")
    batch, length, _ = x.shape
    with torch.no_grad():
        y = model(x)
        assert list(y.shape) == [batch, length, config.hidden_size]
        last = build(attrs.evolve(config, output="last"))
        last.load_state_dict(model.state_dict())
        y_last = last(x)
    assert list(y_last.shape) == [batch, config.hidden_size]
    assert_close(y_last, y[:, -1], what="output='last' != the last position of 'sequence'")


@given(config=hzst.model_configs(max_layers=5))
def test_param_count_equals_the_built_model(config: HybridConfig) -> None:
    """Exact, with input projections and shared blocks (counted once)."""
    model = HybridModel(config)
    built = sum(p.numel() for p in model.parameters())
    assert hybridzoo.param_count(config) == built == model.param_count()
    assert sum(row.params for row in hybridzoo.param_breakdown(config)) == built


def stateful_property(test):  # type: ignore[no-untyped-def]
    """A property over drawn step-mode models (two or more layers, mixed types) and ``data``."""
    configs = hzst.model_configs(layers=STATEFUL or ["ffn"], min_layers=2, min_layer_types=MIX)
    test = given(config=configs, data=st.data())(test)
    return pytest.mark.skipif(not STATEFUL, reason="no stateful layer is registered")(test)


def steps(model: HybridModel, x: torch.Tensor, state: object, start: int = 0) -> torch.Tensor:
    """``model.step`` over ``x[:, start:]`` from ``state``, stacked along the sequence."""
    out = []
    for t in range(start, x.shape[1]):
        y_t, state = model.step(x[:, t], state)
        out.append(y_t)
    return torch.stack(out, 1)


@stateful_property
def test_step_equals_forward(config: HybridConfig, data: st.DataObject) -> None:
    model = build(config)
    x = data.draw(hzst.inputs(hidden=config.embed_dim, **small_inputs), label="x")
    with torch.no_grad():
        y = model(x)
        stepped = steps(model, x, model.init_state(x.shape[0]))
    assert_close(stepped, y, what=f"{config.pattern}: step != forward")


@stateful_property
def test_prefill_then_steps_equals_forward(config: HybridConfig, data: st.DataObject) -> None:
    model = build(config)
    x = data.draw(
        hzst.inputs(hidden=config.embed_dim, batch=st.integers(1, 2), length=st.integers(2, 8))
    )
    split = data.draw(st.integers(1, x.shape[1] - 1), label="split")
    with torch.no_grad():
        y = model(x)
        y_pre, state = model.prefill(x[:, :split])
        assert_close(y_pre, y[:, :split], what=f"{config.pattern}: prefill != forward")
        stepped = steps(model, x, state, split)
    assert_close(stepped, y[:, split:], what=f"{config.pattern}: steps after prefill")


@given(config=hzst.model_configs(max_layers=3), data=st.data())
def test_save_and_load_give_identical_outputs(config: HybridConfig, data: st.DataObject) -> None:
    model = build(config, dtype=torch.float32)
    x = data.draw(hzst.inputs(hidden=config.embed_dim, dtype=torch.float32, **small_inputs))
    with tempfile.TemporaryDirectory() as directory:
        model.save(directory)
        loaded = HybridModel.load(directory).eval()
    assert loaded.config == config
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))


@given(config=hzst.model_configs(max_layers=5))
def test_config_round_trips_through_json(config: HybridConfig) -> None:
    data = json.loads(json.dumps(config.to_dict()))
    again = HybridConfig.from_dict(data)
    assert again == config
    assert again.to_dict() == config.to_dict()
    assert hybridzoo.param_count(again) == hybridzoo.param_count(config)


@given(
    config=hzst.model_configs(
        layers=STATEFUL or ["ffn"], min_layers=2, min_layer_types=MIX, shared_layers=False
    )
)
def test_drawn_patterns_come_from_the_registry(config: HybridConfig) -> None:
    """The strategy itself: layers from the requested pool, at least two types when asked."""
    assume(len(STATEFUL) >= 2)
    assert set(config.pattern) <= set(STATEFUL)
    assert len(set(config.pattern)) >= MIX
    assert not config.shared_layers


def _elements(state: object, *, batch_first: bool = False) -> int:
    """Elements of the tensors of a (nested) state; ``batch_first``: of those with a batch
    dimension only (0-d tensors are shared by the rows)."""
    if isinstance(state, torch.Tensor):
        return 0 if batch_first and state.dim() == 0 else state.numel()
    if isinstance(state, list | tuple):
        return sum(_elements(s, batch_first=batch_first) for s in state)
    raise TypeError(f"unexpected state entry {type(state).__name__}")


@pytest.mark.skipif(not STATEFUL, reason="no stateful layer is registered")
@given(
    config=hzst.model_configs(
        layers=STATEFUL or ["ffn"], min_layers=2, max_layers=3, shared_layers=False
    ),
    data=st.data(),
)
def test_state_numel_equals_the_elements_of_a_real_state(
    config: HybridConfig, data: st.DataObject
) -> None:
    """With a shared layer applied two or more times (one state per application)."""
    layer = data.draw(st.sampled_from(sorted(set(config.pattern))), label="shared layer")
    positions = st.integers(1, len(config.pattern))
    after = data.draw(st.lists(positions, min_size=2, max_size=3, unique=True), label="after")
    config = config.replace(shared_layers={layer: after})
    formula = hybridzoo.state_numel(config)
    model = HybridModel(config)
    one, two = model.init_state(1).layers, model.init_state(2).layers
    if formula is None:  # some layer's state grows with the sequence
        specs = config.specs()
        assert any(
            specs[n].state_size is None
            or specs[n].state_size(config.options_of(n, i), config.hidden_size) is None
            for n, i in config.schedule()
        )
        return
    assert formula == _elements(one, batch_first=True) == _elements(two) - _elements(one)


@given(config=hzst.model_configs(max_layers=4), data=st.data())
def test_replace_with_the_same_values_returns_an_equal_config(
    config: HybridConfig, data: st.DataObject
) -> None:
    registry = hybridzoo.get_registry()
    every = {name: getattr(config, name) for name in MODEL_OPTIONS}
    for name, record in config.layer_options.items():
        prefix = registry.get(name).option_prefix
        every.update({f"{prefix}_{k}": v for k, v in attrs.asdict(record, recurse=False).items()})
    symbols = " ".join(registry.get(n).symbol for n in config.pattern)
    assert config.replace() == config
    assert config.replace(**every) == config
    assert config.replace(pattern=symbols, **every) == config  # a string is parsed, not split

    changes = [("dropout", 0.5), ("norm", "rmsnorm"), ("norm_eps", 1e-3), ("output", "last")]
    changes += [("positional_encoding", "sinusoidal"), ("embed_dim", config.embed_dim + 1)]
    name, value = data.draw(st.sampled_from(changes), label="change")
    changed = config.replace(**{name: value})
    assert getattr(changed, name) == value
    assert all(getattr(changed, n) == getattr(config, n) for n in MODEL_OPTIONS if n != name)
    assert (changed.pattern, changed.layer_options) == (config.pattern, config.layer_options)
    assert changed.replace(**{name: getattr(config, name)}) == config

    layer = data.draw(st.sampled_from(sorted(config.layer_options)), label="layer")
    spec = registry.get(layer)
    field = data.draw(st.sampled_from(attrs.fields(spec.options)), label="field")
    option = data.draw(st.sampled_from([field.default, *field.metadata.get("examples", ())]))
    try:
        changed = config.replace(**{f"{spec.option_prefix}_{field.name}": option})
    except OptionError:  # another field of the record or the hidden size forbids this value
        assume(False)
    expected = attrs.evolve(config.layer_options[layer], **{field.name: option})
    assert changed.layer_options == {**config.layer_options, layer: expected}
    assert all(getattr(changed, n) == getattr(config, n) for n in MODEL_OPTIONS)

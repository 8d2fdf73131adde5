"""The layer-plugin convention in code: ``layer_spec``, ``specs_hook`` and ``option_kwargs`` make
the same spec, hook and keywords that a plugin would write out by hand; ``resolve_options`` gives
a module its options from the record or from keywords."""

from __future__ import annotations

import types
import warnings

import attrs
import pytest

import hybridzoo
from hybridzoo.convention import FORMULA_FIELDS
from hybridzoo.plugin import (
    Capabilities,
    LayerSpec,
    at_least,
    hookimpl,
    layer_spec,
    option,
    option_kwargs,
    specs_hook,
)
from hybridzoo.spec import validate_spec

BUILTINS = ("attention", "ffn", "gated_deltanet", "gla", "kan", "mamba", "mamba2", "moe", "rwkv")


@attrs.frozen
class ToyOptions:
    width: int = option(2, doc="A width.", validator=at_least(1))
    depth: int = option(1, doc="A depth.", validator=at_least(1))


def _formulas(**functions: object) -> types.SimpleNamespace:
    return types.SimpleNamespace(param_count=lambda o, h: h * o.width, **functions)


def test_layer_spec_equals_the_spec_written_out() -> None:
    formulas = _formulas(state_size=lambda o, h: o.depth, NOTATIONS=())
    caps = Capabilities(causal=True, stateful=True)
    spec = layer_spec(
        "toy_pkg", name="toy", symbol="Q", options=ToyOptions, formulas=formulas, capabilities=caps
    )
    assert spec == LayerSpec(
        name="toy",
        symbol="Q",
        option_prefix="toy",
        options=ToyOptions,
        factory="toy_pkg.layer:make_bodies",
        reference="toy_pkg.reference:reference_forward",
        param_count=formulas.param_count,
        state_size=formulas.state_size,
        notations=(),
        capabilities=caps,
    )
    validate_spec(spec)


def test_layer_spec_overrides_and_missing_formulas() -> None:
    own = lambda o, h: 7  # noqa: E731
    spec = layer_spec(
        "toy_pkg",
        name="toy",
        symbol="Q",
        options=ToyOptions,
        formulas=_formulas(flops=None),
        option_prefix="t",
        factory=lambda o, h: [],
        reference=None,
        param_count=own,
    )
    assert spec.option_prefix == "t" and spec.reference is None and spec.param_count is own
    assert spec.state_size is None and spec.scale_options is None and spec.flops is None
    with pytest.raises(hybridzoo.PluginError, match="no param_count"):
        layer_spec("toy_pkg", name="toy", symbol="Q", options=ToyOptions, formulas=object())
    with pytest.raises(hybridzoo.PluginError, match="package name"):
        layer_spec("not a package", name="toy", symbol="Q", options=ToyOptions, param_count=own)


def test_specs_hook_is_a_hookimpl_returning_the_specs() -> None:
    spec = layer_spec("toy_pkg", name="toy", symbol="Q", options=ToyOptions, formulas=_formulas())
    hook = specs_hook(spec)
    assert hook() == [spec] and hook.__name__ == "hybridzoo_layer_specs"
    assert hook.hybridzoo_impl == hookimpl(lambda: None).hybridzoo_impl  # type: ignore[attr-defined]
    with pytest.raises(hybridzoo.PluginError, match="LayerSpec"):
        specs_hook("toy")  # type: ignore[arg-type]


def test_option_kwargs() -> None:
    record = ToyOptions(width=3, depth=4)
    assert option_kwargs(record) == {"width": 3, "depth": 4}
    assert option_kwargs(record, exclude=["width"]) == {"depth": 4}
    assert option_kwargs(record, only=("depth",)) == {"depth": 4}
    with pytest.raises(hybridzoo.PluginError, match="no field wdth"):
        option_kwargs(record, exclude=["wdth"])
    with pytest.raises(hybridzoo.PluginError, match="its fields: width, depth"):
        option_kwargs(record, only=["height"])


@pytest.mark.parametrize("name", BUILTINS)
def test_builtins_declare_through_the_convention(name: str) -> None:
    """Each builtin's hook returns its SPEC, and every formula of its formulas module that the
    convention names reaches the spec."""
    import importlib

    package = importlib.import_module(f"hybridzoo_plugins.{name}")
    formulas = importlib.import_module(f"hybridzoo_plugins.{name}.formulas")
    assert package.hybridzoo_layer_specs() == [package.SPEC]
    assert hybridzoo.get_registry().get(name) is package.SPEC
    for attr, field in FORMULA_FIELDS.items():
        if hasattr(formulas, attr):
            assert getattr(package.SPEC, field) == getattr(formulas, attr), field
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert package.SPEC.reference.resolve() is not None  # type: ignore[union-attr]


def test_whole_product() -> None:
    from hybridzoo.plugin import whole_product

    assert whole_product("head_dim", 64, "expand_k", 0.5, what="the key width") == 32
    assert whole_product("head_dim", 30, "expand_v", 0.1, what="the value width") == 3
    with pytest.raises(ValueError, match=r"head_dim · expand_v \(the value width\) .* 3 · 0.5"):
        whole_product("head_dim", 3, "expand_v", 0.5, what="the value width")
    with pytest.raises(ValueError, match="expand_v"):
        whole_product("head_dim", 4, "expand_v", 0, what="the value width")
    with pytest.raises(ValueError, match="head_dim"):
        whole_product("head_dim", 0, "expand_v", 1, what="the value width")


def test_resolve_options() -> None:
    """A module's options: the given record (or the defaults) with its keyword changes, each
    checked by the record's own validators; a name that is no field is refused with the
    closest ones."""
    from hybridzoo.errors import UnknownOptionError
    from hybridzoo.plugin import resolve_options

    record = ToyOptions(width=3)
    assert resolve_options(ToyOptions, None, {}) == ToyOptions()
    assert resolve_options(ToyOptions, record, {}) is record
    assert resolve_options(ToyOptions, record, {"depth": 5}) == ToyOptions(width=3, depth=5)
    assert resolve_options(ToyOptions, None, {"width": 7}) == ToyOptions(width=7)
    with pytest.raises(UnknownOptionError, match=r"ToyOptions has no field 'wdth'\. Did you mean"):
        resolve_options(ToyOptions, None, {"wdth": 2})
    with pytest.raises(ValueError, match="width must be an integer >= 1, got 0"):
        resolve_options(ToyOptions, record, {"width": 0})
    with pytest.raises(TypeError, match="options must be a ToyOptions record"):
        resolve_options(ToyOptions, {"width": 2}, {})


def test_modules_take_the_record_or_its_fields() -> None:
    """Every builtin body built from a record takes the record itself or any of its fields as
    keywords, the same module either way; an unknown keyword names the record."""
    import torch

    from hybridzoo.errors import UnknownOptionError
    from hybridzoo_plugins.gla import GLAOptions
    from hybridzoo_plugins.gla.layer import GatedLinearAttention
    from hybridzoo_plugins.rwkv import RWKVOptions
    from hybridzoo_plugins.rwkv.layer import RWKV6TimeMix

    torch.manual_seed(0)
    by_keywords = GatedLinearAttention(16, num_heads=2, head_dim=4)
    torch.manual_seed(0)
    by_record = GatedLinearAttention(16, GLAOptions(num_heads=2, head_dim=4))
    a, b = by_keywords.state_dict(), by_record.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    body = RWKV6TimeMix(16, RWKVOptions(head_size=4), dtype=torch.float64, mix_rank=2)
    assert body.head_size == 4 and body.mix_rank == 2 and body.key.weight.dtype == torch.float64
    with pytest.raises(UnknownOptionError, match="RWKVOptions has no field 'head_sise'"):
        RWKV6TimeMix(16, head_sise=4)
    with pytest.raises(TypeError, match="head_sise"):  # as any unknown keyword
        RWKV6TimeMix(16, head_sise=4)

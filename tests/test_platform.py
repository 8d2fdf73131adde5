"""The platform's promises: the core names no layer, positionwise layers, callable sub_blocks,
the decorator's spec, and the deprecated spellings that keep working."""

from __future__ import annotations

import ast
import io
import re
import tokenize
from pathlib import Path

import attrs
import pytest
import torch
from toy_layers import ConvOptions, conv_spec, mlp_spec

import hybridzoo
from hybridzoo import Registry
from hybridzoo.plugin import NamedPattern, register_pattern

CORE = Path(hybridzoo.__file__).parent
BUILTIN_DIST = "hybridzoo"


@pytest.fixture
def toy_registry():
    """A registry with every builtin plugin disabled, then two run-time layers and a pattern."""
    registry = Registry(disabled=[BUILTIN_DIST], strict=False)
    with hybridzoo.use_registry(registry):
        hybridzoo.register_layer(conv_spec())
        hybridzoo.register_layer(mlp_spec())
        register_pattern(NamedPattern("toy_mix", ("conv", "conv", "mlp"), "mlp every 3rd"))
        yield registry


def test_without_builtins_runtime_layers_get_patterns_counting_and_budget_matching(
    toy_registry: Registry,
) -> None:
    from hybridzoo.arena.lm import language_model_param_count
    from hybridzoo.arena.runner import match_hidden_size, scaled_layer_options

    builtins = [p.name for p in toy_registry.plugins() if p.distribution == BUILTIN_DIST]
    assert builtins and all(
        p.status == "disabled" for p in toy_registry.plugins() if p.name in builtins
    )
    assert set(toy_registry.names()).isdisjoint({"mamba", "attention", "gla", "rwkv", "ffn", "kan"})
    (info,) = [p for p in hybridzoo.list_patterns() if p.name == "toy_mix"]
    assert info.available and info.layers == ("conv", "mlp") and info.source is None
    names = hybridzoo.expand_named_pattern("toy_mix", 5)
    assert names == ["conv", "conv", "mlp", "conv", "conv"]
    model = hybridzoo.build_pattern("toy_mix", 5, embed_dim=6, hidden_size=12, mlp_inner=5)
    assert model.param_count() == hybridzoo.param_count(
        names, embed_dim=6, hidden_size=12, mlp_inner=5
    )
    # width scaling comes from the run-time layer's own scale_options; the user's value wins
    assert scaled_layer_options(names, 32, 64) == {"mlp_inner": 16}
    assert scaled_layer_options(names, 32, 64, {"mlp_inner": 3}) == {"mlp_inner": 3}
    budget = language_model_param_count(names, vocab_size=50, hidden_size=40, mlp_inner=20)
    hidden, count = match_hidden_size(names, budget=budget, vocab_size=50, seq_len=64)
    assert (hidden, count) == (40, budget)


def test_positionwise_layer_declares_nothing_else(toy_registry: Registry) -> None:
    spec = toy_registry.get("mlp")
    assert spec.state_size is None and not spec.capabilities.stateful
    assert hybridzoo.state_numel("C P C", hidden_size=8, conv_kernel_size=3) == 2 * 2 * 8
    torch.manual_seed(0)
    model = hybridzoo.build("C P P C", embed_dim=4, hidden_size=8, dropout=0.0, output="sequence")
    model.eval()
    x = torch.randn(2, 6, 4)
    state = model.init_state(2)
    steps = torch.stack([model.step(x[:, t], state)[0] for t in range(6)], 1)
    torch.testing.assert_close(steps, model(x))
    y_pre, state = model.prefill(x[:, :4])
    torch.testing.assert_close(y_pre, model(x)[:, :4])
    assert state.layers[1] == [()]  # the positionwise block holds no state


def test_sub_blocks_may_depend_on_the_options(toy_registry: Registry) -> None:
    @attrs.frozen
    class TwoOptions:
        twice: bool = hybridzoo.option(True, doc="Two bodies.", validator=hybridzoo.plugin.boolean)

    def factory(options: TwoOptions, hidden_size: int) -> list[torch.nn.Module]:
        return [torch.nn.Linear(hidden_size, hidden_size) for _ in range(1 + options.twice)]

    spec = hybridzoo.LayerSpec(
        name="two",
        symbol="W",
        option_prefix="two",
        options=TwoOptions,
        factory=factory,
        param_count=lambda o, h: (1 + o.twice) * (h * h + h),
        capabilities=hybridzoo.Capabilities(positionwise=True),
        sub_blocks=lambda o: 1 + o.twice,
    )
    hybridzoo.register_layer(spec)
    for twice in (True, False):
        model = hybridzoo.build("W C", embed_dim=5, hidden_size=5, two_twice=twice)
        assert len(model.blocks[0].sub_blocks) == 1 + twice
        assert model.param_count() == hybridzoo.param_count("W C", hidden_size=5, two_twice=twice)
    broken = attrs.evolve(
        spec, name="broken", symbol="V", option_prefix="broken", sub_blocks=lambda o: 0
    )
    with pytest.raises(hybridzoo.PluginError, match="sub_blocks must be >= 1"):
        hybridzoo.register_layer(broken)


def test_decorator_attaches_its_spec() -> None:
    with hybridzoo.use_registry(Registry(autoload=False)):

        @hybridzoo.layer(
            name="deco", symbol="D", options=ConvOptions, param_count=lambda o, h: h * h + h
        )
        def make(options, hidden_size):
            """A linear map."""
            return torch.nn.Linear(hidden_size, hidden_size)

        assert make.spec is hybridzoo.get_layer("deco")
        assert make.spec.factory is make and make.spec.description == "A linear map."
        assert hybridzoo.param_count("D D", hidden_size=4) == 2 * (20 + 8) + 8


@pytest.mark.parametrize(
    ("name", "new", "make", "bad"),
    [
        ("int_at_least", "at_least", lambda f: f(1), 0),
        ("float_in", "in_range", lambda f: f(0.0, 1.0), 5.0),
        ("choice", "one_of", lambda f: f("a", "b"), "c"),
        ("boolean", "boolean", lambda f: f, 1),
        ("power_of_two", "power_of_two", lambda f: f, 3),
    ],
)
def test_old_validators_are_deprecated_aliases(name, new, make, bad) -> None:
    import hybridzoo.spec

    with pytest.warns(DeprecationWarning, match=f"hybridzoo.plugin.{new}"):
        old = getattr(hybridzoo.spec, name)
    validator = make(old)
    assert type(validator).__module__ == "hybridzoo.validate"
    with pytest.raises((TypeError, ValueError), match=f"got {bad!r}"):
        validator(None, None, bad)


def test_option_fields_is_a_deprecated_alias() -> None:
    import hybridzoo.spec

    with pytest.warns(DeprecationWarning, match="attrs.fields"):
        assert hybridzoo.spec.option_fields(ConvOptions) == attrs.fields(ConvOptions)


def test_old_named_pattern_spellings_still_work() -> None:
    with pytest.warns(DeprecationWarning, match="expand_named_pattern"):
        assert hybridzoo.pattern("jamba_like", 2) == ["mamba", "attention"]
    from hybridzoo import patterns

    with pytest.warns(DeprecationWarning, match="list_patterns"):
        table = patterns.NAMED_PATTERNS
    assert table["ssm_stack"](2) == ["mamba", "mamba"]


# -- the core names no layer -----------------------------------------------------------------------


def _builtin_vocabulary() -> tuple[set[str], set[str], set[str]]:
    """Layer names, user option names and symbols of the builtin distribution."""
    registry = Registry()
    specs = [s for s in registry.specs() if registry.source(s.name)[0] == BUILTIN_DIST]
    assert len(specs) >= 6
    names = {s.name for s in specs}
    return names, {o for s in specs for o in s.option_names()}, {s.symbol for s in specs}


def _identifiers(node: ast.AST) -> list[str]:
    if isinstance(node, ast.Name):
        return [node.id]
    if isinstance(node, ast.arg):
        return [node.arg]
    if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
        return [node.name]
    if isinstance(node, ast.Attribute):
        return [node.attr]
    if isinstance(node, ast.keyword):
        return [node.arg or ""]
    if isinstance(node, ast.alias):
        return [node.name.rpartition(".")[2], node.asname or ""]
    return []


def builtin_mentions(source: str, names: set[str], options: set[str], symbols: set[str]) -> list:
    """Where ``source`` uses a builtin: an identifier or a whole string literal that is a layer
    name, a user option name anywhere (code, docstring, comment), a layer name in quotes or
    backquotes (``"name"``, ``name``), a quoted pattern made only of builtin symbols
    (``"M M A"``). Prose that mentions a layer ("Mamba's N") is not flagged."""
    option_re = re.compile(r"\b(" + "|".join(map(re.escape, sorted(options))) + r")\b")
    quoted_re = re.compile(r"([\"'`])(" + "|".join(sorted(names)) + r")\1")
    pattern_re = re.compile(r"([\"'`])([A-Z(][A-Z ()*\d,>-]*[A-Z)\d])\1")
    found: list[tuple[int, str]] = []

    def text(line: int, value: str) -> None:
        found.extend((line, m.group(0)) for m in option_re.finditer(value))
        found.extend((line, m.group(0)) for m in quoted_re.finditer(value))
        for m in pattern_re.finditer(value):
            letters = re.findall(r"[A-Z]", m.group(2))
            if len(letters) >= 2 and set(letters) <= symbols:
                found.append((line, m.group(0)))

    for node in ast.walk(ast.parse(source)):
        found.extend((node.lineno, i) for i in _identifiers(node) if i in names or i in options)
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            if node.value.strip() in names:
                found.append((node.lineno, repr(node.value)))
            text(node.lineno, node.value)
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type == tokenize.COMMENT:
            text(token.start[0], token.string)
    return sorted(set(found))


def test_the_scan_finds_what_it_should() -> None:
    names, options, symbols = {"conv"}, {"conv_kernel_size"}, {"C", "P"}
    flagged = builtin_mentions(
        'def conv(x): ...\nY = "conv"\nZ = f"use {1}: conv_kernel_size=3"\n'
        '# set conv_kernel_size\nD = "the ``conv`` layer, pattern \\"C C P\\""\n',
        names,
        options,
        symbols,
    )
    assert [line for line, _ in flagged] == [1, 2, 3, 4, 5, 5]
    prose = 'W = "a conv layer; Conv nets; C is a letter; the conv_kernel_sizes list"\n'
    assert builtin_mentions(prose, names, options, symbols) == []


def test_the_core_names_no_builtin_layer() -> None:
    names, options, symbols = _builtin_vocabulary()
    problems = []
    for path in sorted(CORE.rglob("*.py")):  # the arena included: it is part of the core
        for line, what in builtin_mentions(path.read_text(), names, options, symbols):
            problems.append(f"{path.relative_to(CORE.parent)}:{line}: {what}")
    assert not problems, "the core names builtin layers:\n" + "\n".join(problems)


@pytest.mark.parametrize(
    ("formula", "bad"),
    [("param_count", b) for b in (-5, 2.5, "12", None, True)]
    + [("state_size", b) for b in (-3, 1.5, "8", False)],  # None: a state that grows, valid
)
def test_formula_results_are_checked(formula: str, bad: object) -> None:
    spec = attrs.evolve(conv_spec(name="liar", symbol="L"), **{formula: lambda o, h: bad})
    registry = Registry(autoload=False)
    registry.register(spec)
    count = hybridzoo.param_count if formula == "param_count" else hybridzoo.state_numel
    with (
        hybridzoo.use_registry(registry),
        pytest.raises(hybridzoo.PluginError, match=f"layer 'liar': its {formula} formula returned"),
    ):
        count("L", hidden_size=4)


def test_every_error_and_warning_is_exported_at_the_top_level() -> None:
    import hybridzoo.errors as errors

    public = {
        name
        for name, value in vars(errors).items()
        if isinstance(value, type)
        and issubclass(value, (errors.HybridZooError, Warning))
        and value.__module__ == errors.__name__
        and not name.startswith("_")
    }
    assert public - set(hybridzoo.__all__) == set()
    assert all(getattr(hybridzoo, name) is getattr(errors, name) for name in public)

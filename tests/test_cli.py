"""The command line (run in-process through hybridzoo.cli.main)."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import textwrap

import attrs
import pytest

import hybridzoo
from hybridzoo.cli import build_parser, main, parse_value
from hybridzoo.cli.model_args import model_options
from hybridzoo.cli.values import IMPORT_ENV, parse_assignment


def test_parse_value():
    assert parse_value("128") == 128
    assert parse_value("0.5") == 0.5
    assert parse_value("None") is None
    assert parse_value("true") is True
    assert parse_value("silu") == "silu"
    assert parse_value("FALSE") is False and parse_value("1e-6") == 1e-6
    assert parse_value("inf") == math.inf and math.isnan(parse_value("nan"))
    assert parse_value("(1, 2)") == (1, 2)
    assert parse_assignment("attention-qk-norm=true") == ("attention_qk_norm", True)


def test_one_key_value_parser_for_every_command():
    """``-o x=true`` is True in show, in arena --layer-option and in check-plugin --option."""
    from hybridzoo.testing.report import _parse_options

    show = build_parser("show").parse_args(["show", "A", "-o", "attention_qk_norm=true"])
    assert model_options(show) == {"attention_qk_norm": True}
    arena = build_parser("arena").parse_args(["arena", "--layer-option", "attention_qk_norm=true"])
    assert arena.layer_option == [("attention_qk_norm", True)]
    assert _parse_options(["qk_norm=true", "window_size=None"]) == {
        "qk_norm": True,
        "window_size": None,
    }


def test_layers_lists_builtins(capsys):
    assert main(["layers", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    ffn = next(r for r in rows if r["name"] == "ffn")
    assert ffn["symbol"] == "F" and ffn["distribution"] == "hybridzoo"
    assert ffn["options"][0]["name"] == "ffn_expand_factor"
    assert ffn["option_prefix"] == ffn["prefix"] == "ffn"  # the key of `hybridzoo plugins`


def test_layers_say_that_position_wise_layers_step(capsys):
    assert main(["layers"]) == 0
    lines = {
        line.split()[1]: line for line in capsys.readouterr().out.splitlines() if line[:1] != " "
    }
    assert "position-wise, step mode, packs documents" in lines["ffn"]
    assert "no step mode" not in lines["moe"] and "position-wise" not in lines["mamba"]


def test_show_counts_and_visualises(capsys):
    assert main(["show", "F F", "--hidden-size", "16", "--embed-dim", "8"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("Layer pattern: F → F\nLegend: F=ffn")
    assert "total" in out
    assert main(["show", "FF", "--hidden-size", "16", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["total"] == sum(r["params"] for r in data["rows"])


def test_every_model_option_is_a_flag(capsys):
    parser = build_parser("show")
    for field in attrs.fields(hybridzoo.ModelOptions):
        flag = "--shared" if field.name == "shared_layers" else f"--{field.name}".replace("_", "-")
        value = "ffn=1" if field.name == "shared_layers" else "1"
        given = model_options(parser.parse_args(["show", "F", flag, value]))
        assert given == {field.name: {"ffn": [1]} if field.name == "shared_layers" else 1}
    args = parser.parse_args(["show", "F", "--norm", "rmsnorm", "--norm-eps", "1e-6"])
    assert model_options(args) == {"norm": "rmsnorm", "norm_eps": 1e-6}
    assert main(["show", "F F", "--hidden-size", "8", "--norm", "rmsnorm", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["total"] == hybridzoo.param_count("F F", hidden_size=8, norm="rmsnorm")
    assert data["state_numel"] == data["state_size"] == 0


def test_patterns_lists_the_named_patterns(capsys):
    assert main(["patterns", "-n", "4"]) == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("jamba_like"))
    assert "M A M A" in line
    assert main(["show", "jamba_like", "-n", "2", "--hidden-size", "8", "--json"]) == 0
    assert [r["name"] for r in json.loads(capsys.readouterr().out)["rows"]][:2] == [
        "mamba",
        "attention",
    ]


def test_show_reports_errors(capsys):
    assert main(["show", "F", "-o", "ffn_expnd=2"]) == 2
    assert "Did you mean 'ffn_expand_factor'" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["show", "F F", "--shared", "ffn=x"], "--shared takes LAYER=POS"),
        (["show", "F", "-o", "novalue"], "--option: expected KEY=VALUE, got 'novalue'"),
        (["show", "F", "--norm-eps", "inf"], "norm_eps must be a number in (0, inf), got inf"),
        (["show", "jamba_like"], "give --num-layers N"),
        (["show", "F", "--bogus"], "unrecognized arguments: --bogus"),
        (["--import", "no_such_module_here", "layers"], "No module named 'no_such_module_here'"),
    ],
)
def test_usage_errors_exit_with_status_2(argv, message, capsys):
    assert main(argv) == 2
    assert message in capsys.readouterr().err


@pytest.fixture
def layer_module(tmp_path):
    """A script that registers a layer at run time (symbol Q), as a user's own file would."""
    path = tmp_path / "my_layers.py"
    path.write_text(
        textwrap.dedent(
            """
            import attrs
            import hybridzoo
            from hybridzoo.plugin import at_least


            @attrs.frozen
            class QOptions:
                width: int = hybridzoo.option(2, doc="A width.", validator=at_least(1))


            hybridzoo.register_layer(
                hybridzoo.LayerSpec(
                    name="quux", symbol="Q", option_prefix="quux", options=QOptions,
                    factory=lambda o, h: None, param_count=lambda o, h: o.width * h,
                ),
                replace=True,
            )
            """
        )
    )
    with hybridzoo.use_registry(hybridzoo.Registry()):
        yield path


def test_import_makes_run_time_layers_visible(layer_module, monkeypatch, capsys):
    assert main(["show", "Q"]) == 2  # not registered without the import
    assert "unknown layer" in capsys.readouterr().err
    for argv in (
        ["--import", str(layer_module), "show", "Q Q", "--hidden-size", "4", "--json"],
        ["show", "Q Q", "--hidden-size", "4", "--json", "--import", str(layer_module)],
    ):
        assert main(argv) == 0
        assert json.loads(capsys.readouterr().out)["total"] == 2 * (2 * 4 + 8) + 8
    monkeypatch.setenv(IMPORT_ENV, str(layer_module))
    assert main(["layers", "--json"]) == 0
    assert "quux" in {row["name"] for row in json.loads(capsys.readouterr().out)}


def test_help(capsys):
    assert main([]) == 0
    assert "layers" in capsys.readouterr().out
    assert main(["show", "--help"]) == 0
    assert "--norm-eps" in capsys.readouterr().out


def test_the_package_and_its_parser_import_no_torch():
    code = (
        "import sys, hybridzoo, hybridzoo.cli; hybridzoo.cli.build_parser('show'); "
        "assert 'torch' not in sys.modules, 'torch imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)

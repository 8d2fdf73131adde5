"""The command line (run in-process through hybridzoo.cli.main)."""

from __future__ import annotations

import json

from hybridzoo.cli import main, parse_value


def test_parse_value():
    assert parse_value("128") == 128
    assert parse_value("0.5") == 0.5
    assert parse_value("None") is None
    assert parse_value("true") is True
    assert parse_value("silu") == "silu"


def test_layers_lists_builtins(capsys):
    assert main(["layers", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    ffn = next(r for r in rows if r["name"] == "ffn")
    assert ffn["symbol"] == "F" and ffn["distribution"] == "hybridzoo"
    assert ffn["options"][0]["name"] == "ffn_expand_factor"


def test_show_counts_and_visualises(capsys):
    assert main(["show", "F F", "--hidden-size", "16", "--embed-dim", "8"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("Layer pattern: F → F\nLegend: F=ffn")
    assert "total" in out
    assert main(["show", "FF", "--hidden-size", "16", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["total"] == sum(r["params"] for r in data["rows"])


def test_show_reports_errors(capsys):
    assert main(["show", "F", "-o", "ffn_expnd=2"]) == 2
    assert "Did you mean 'ffn_expand_factor'" in capsys.readouterr().err


def test_help(capsys):
    assert main([]) == 0
    assert "layers" in capsys.readouterr().out

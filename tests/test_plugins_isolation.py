"""A broken third-party plugin never takes the registry down.

Each test installs a *fake distribution* in ``tmp_path`` (a ``<dist>-1.0.dist-info`` folder with
``METADATA`` and ``entry_points.txt``, next to the plugin's module), puts ``tmp_path`` on
``sys.path`` and builds a fresh :class:`hybridzoo.Registry`, which reads
``importlib.metadata.entry_points`` like it does for real installs. For every fault:

- the rest of the registry keeps working (a model of builtin layers builds and runs);
- the failure is recorded with the distribution's name and a fix (``PluginRecord.error``);
- strict mode (``Registry(strict=True)`` and ``HYBRIDZOO_STRICT_PLUGINS=1``) raises;
- ``hybridzoo plugins`` and ``hybridzoo layers``, run as subprocesses with ``PYTHONPATH`` set to
  ``tmp_path``, still work and show the failure.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import attrs
import pytest

import hybridzoo
from hybridzoo import PLUGIN_API_VERSION, PluginConflictError, PluginError, Registry
from hybridzoo.registry import PluginRecord

ENV_VARS = (
    "HYBRIDZOO_DISABLE_PLUGIN_AUTOLOAD",
    "HYBRIDZOO_DISABLE_PLUGINS",
    "HYBRIDZOO_STRICT_PLUGINS",
)
BUILTIN_DIST = "hybridzoo"
#: builtin layers tried, in order, for the "the rest still works" model (small and quick)
PREFERRED_BUILTINS = ("ffn", "attention", "kan")


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ENV_VARS:
        monkeypatch.delenv(var, raising=False)


# -- fake distributions ----------------------------------------------------------------------------


def spec_module(
    name: str,
    symbol: str,
    prefix: str,
    *,
    api_version: int = PLUGIN_API_VERSION,
    field: str = "width",
) -> str:
    """Source of a plugin module with one valid, buildable spec (a small feed-forward)."""
    return textwrap.dedent(
        f"""
        import attrs
        import hybridzoo
        from hybridzoo.plugin import (
            Capabilities, LayerSpec, at_least, feedforward_param_count, hookimpl, option
        )


        @attrs.frozen
        class Options:
            {field}: int = option(1, doc="inner width factor", validator=at_least(1))


        def factory(options, hidden_size):
            from hybridzoo.nn import FeedForward

            return FeedForward(hidden_size, options.{field})


        def count(options, hidden_size):
            return feedforward_param_count(hidden_size, options.{field})


        SPEC = LayerSpec(
            name={name!r}, symbol={symbol!r}, option_prefix={prefix!r}, options=Options,
            factory=factory, param_count=count,
            capabilities=Capabilities(stateful=True), api_version={api_version},
        )


        @hookimpl
        def hybridzoo_layer_specs():
            return [SPEC]
        """
    )


@attrs.frozen
class Fault:
    """One kind of broken plugin: its module source and what its failure must say."""

    module_source: str
    expect_in_error: tuple[str, ...]
    victim: str | None = None  # a builtin layer the fault claims (not used for the model)
    conflict: bool = False


FAULTS: dict[str, Fault] = {
    "import_raises": Fault(
        "raise RuntimeError('boom: this plugin cannot be imported')\n",
        ("failed to import", "RuntimeError", "boom", "HYBRIDZOO_DISABLE_PLUGINS="),
    ),
    "hook_returns_garbage": Fault(
        textwrap.dedent(
            """
            import hybridzoo

            @hybridzoo.hookimpl
            def hybridzoo_layer_specs():
                return 42
            """
        ),
        ("hybridzoo_layer_specs() must return a list of LayerSpec", "42"),
    ),
    "hook_returns_non_specs": Fault(
        textwrap.dedent(
            """
            import hybridzoo

            @hybridzoo.hookimpl
            def hybridzoo_layer_specs():
                return [{"name": "dict_is_not_a_spec"}]
            """
        ),
        ("must return hybridzoo.LayerSpec objects", "dict"),
    ),
    "hook_raises": Fault(
        textwrap.dedent(
            """
            import hybridzoo

            @hybridzoo.hookimpl
            def hybridzoo_layer_specs():
                raise ValueError("the hook itself is broken")
            """
        ),
        ("hook raised", "the hook itself is broken"),
    ),
    "claims_existing_name": Fault(
        spec_module("ffn", "Q", "fakeq"),
        ("the name 'ffn' is already used", "'hybridzoo'", "HYBRIDZOO_DISABLE_PLUGINS="),
        victim="ffn",
        conflict=True,
    ),
    "claims_existing_symbol": Fault(
        spec_module("fakesym", "F", "fakesym"),
        ("the symbol 'F' is already used", "'ffn'", "HYBRIDZOO_DISABLE_PLUGINS="),
        victim="ffn",
        conflict=True,
    ),
    "claims_existing_prefix": Fault(
        spec_module("fakeprefix", "Q", "ffn"),
        ("the option prefix 'ffn' is already used", "HYBRIDZOO_DISABLE_PLUGINS="),
        victim="ffn",
        conflict=True,
    ),
    "no_hook": Fault(
        "VALUE = 'a module with no hybridzoo hook'\n",
        ("implements no hybridzoo hook", "@hybridzoo.hookimpl"),
    ),
    "import_exits": Fault(
        "import sys\nsys.exit(3)\n",
        ("failed to import", "SystemExit: 3", "must not exit the process"),
    ),
    "misspelt_hook": Fault(
        textwrap.dedent(
            """
            import hybridzoo

            @hybridzoo.hookimpl
            def hybridzoo_layer_spec():
                return []
            """
        ),
        ("has invalid hooks", "hybridzoo_layer_spec"),
    ),
    "claims_existing_pattern": Fault(
        textwrap.dedent(
            """
            import hybridzoo

            @hybridzoo.hookimpl
            def hybridzoo_named_patterns():  # the version-1 form: a dict of name -> function
                return {"jamba_like": lambda n: ["ffn"] * n}
            """
        ),
        ("named pattern 'jamba_like'", "already used", "'hybridzoo'", "DISABLE_PLUGINS="),
        conflict=True,
    ),
    "claims_overlapping_option": Fault(
        spec_module("fakeover", "Q", "ffn_expand", field="factor"),
        ("the option name 'ffn_expand_factor'", "the prefixes overlap", "'ffn'"),
        conflict=True,
    ),
    "newer_api_version": Fault(
        spec_module("fromthefuture", "Q", "fromthefuture", api_version=PLUGIN_API_VERSION + 1),
        (
            f"plugin API version {PLUGIN_API_VERSION + 1}",
            f"supports version {PLUGIN_API_VERSION}",
            "upgrade hybridzoo",
        ),
    ),
}


def install_distribution(
    monkeypatch: pytest.MonkeyPatch, root: Path, dist: str, module: str, source: str, ep_name: str
) -> None:
    """Write ``<dist>-1.0.dist-info`` (METADATA, entry_points.txt) and ``<module>.py`` in root,
    and put root on ``sys.path``."""
    info = root / f"{dist.replace('-', '_')}-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(f"[hybridzoo.layers]\n{ep_name} = {module}\n")
    (root / f"{module}.py").write_text(source)
    monkeypatch.syspath_prepend(str(root))


def install_fault(root: Path, case: str, monkeypatch: pytest.MonkeyPatch) -> tuple[str, str]:
    """Install the fake distribution of ``case`` on ``sys.path``; ``(dist, entry-point name)``."""
    dist = f"hybridzoo-fake-{case.replace('_', '-')}"
    ep_name = f"fake_{case}"
    source = FAULTS[case].module_source
    install_distribution(monkeypatch, root, dist, f"fake_{case}_plugin", source, ep_name)
    return dist, ep_name


def install_layer(
    monkeypatch: pytest.MonkeyPatch, root: Path, dist: str, name: str, ep_name: str
) -> Registry:
    """Install a distribution of one good layer ``name`` (symbol Q, options ``<name>_width``) and
    return a fresh registry that sees it."""
    module = f"{dist.replace('-', '_')}_plugin"
    install_distribution(monkeypatch, root, dist, module, spec_module(name, "Q", name), ep_name)
    return Registry()


def record_of(registry: Registry, ep_name: str) -> PluginRecord:
    (record,) = [p for p in registry.plugins() if p.name == ep_name]
    return record


def builtin_failures() -> list[str]:
    """Entry points of builtin plugins that fail on their own (none once they are all written):
    disabled in the strict tests so that only the fake plugin can make them raise."""
    return [p.name for p in Registry().failures() if p.distribution == BUILTIN_DIST]


def build_with_builtins(registry: Registry, avoid: str | None = None) -> None:
    """Build and run a small model of builtin layers from ``registry``."""
    import torch

    names = [
        n
        for n in PREFERRED_BUILTINS
        if n in registry and n != avoid and registry.source(n)[0] == BUILTIN_DIST
    ][:2]
    assert names, f"no builtin layer to build among {PREFERRED_BUILTINS} in {registry.names()}"
    with hybridzoo.use_registry(registry):
        model = hybridzoo.build(names, embed_dim=8, hidden_size=16, dropout=0.0)
        y = model(torch.randn(1, 3, 8))
    assert y.shape == (1, 16)


def cli(root: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Run ``python -m hybridzoo ARGS`` with ``root`` on PYTHONPATH (and no HYBRIDZOO_* vars)."""
    environ = {k: v for k, v in os.environ.items() if k not in ENV_VARS}
    environ["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(root), environ.get("PYTHONPATH", "")) if p
    )
    environ.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "hybridzoo", *args],
        capture_output=True,
        text=True,
        env=environ,
        timeout=120,
    )


# -- each fault ------------------------------------------------------------------------------------


@pytest.fixture(params=sorted(FAULTS))
def installed_fault(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> tuple[Fault, str, str]:
    """Each fault's fake distribution installed in ``tmp_path``: ``(fault, dist, entry point)``."""
    dist, ep_name = install_fault(tmp_path, request.param, monkeypatch)
    return FAULTS[request.param], dist, ep_name


def test_fault_is_recorded_and_the_rest_works(installed_fault: tuple[Fault, str, str]) -> None:
    fault, dist, ep_name = installed_fault
    registry = Registry()
    record = record_of(registry, ep_name)
    assert record.distribution == dist
    assert record.version == "1.0"
    assert record.status == "failed"
    assert record.layers == []
    assert record in registry.failures()
    error = record.error or ""
    assert f"'{dist}'" in error, error
    for needle in fault.expect_in_error:
        assert needle in error, f"{needle!r} not in the error:\n{error}"
    build_with_builtins(registry, avoid=fault.victim)


def test_fault_raises_in_strict_mode(
    installed_fault: tuple[Fault, str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    fault, dist, _ = installed_fault
    others = builtin_failures()
    expected = PluginConflictError if fault.conflict else PluginError
    with pytest.raises(expected) as info:
        Registry(strict=True, disabled=others).load()
    assert info.value.distribution == dist
    assert dist in str(info.value)
    monkeypatch.setenv("HYBRIDZOO_STRICT_PLUGINS", "1")
    monkeypatch.setenv("HYBRIDZOO_DISABLE_PLUGINS", ",".join(others))
    with pytest.raises(expected, match="HYBRIDZOO_STRICT_PLUGINS"):
        Registry().names()


def test_fault_does_not_break_the_commands(
    installed_fault: tuple[Fault, str, str], tmp_path: Path
) -> None:
    _, dist, ep_name = installed_fault
    listing = cli(tmp_path, "plugins", "--json")
    assert listing.returncode == 0, listing.stderr
    report = json.loads(listing.stdout)
    (plugin,) = [p for p in report["plugins"] if p["name"] == ep_name]
    assert (plugin["distribution"], plugin["status"]) == (dist, "failed")
    assert dist in plugin["error"]
    assert report["torch_imported"] is False
    layers = cli(tmp_path, "layers")
    assert layers.returncode == 0, layers.stderr
    assert "ffn" in layers.stdout
    assert ep_name in layers.stdout  # listed among the plugins that failed to load


def test_plugins_table_shows_the_failure_and_its_reason(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dist, ep_name = install_fault(tmp_path, "import_raises", monkeypatch)
    table = cli(tmp_path, "plugins")
    assert table.returncode == 0, table.stderr
    (row,) = [line for line in table.stdout.splitlines() if line.startswith(ep_name)]
    assert dist in row and "failed" in row
    assert "reason: " in table.stdout and "boom" in table.stdout
    assert "ffn (F, ffn_*)" in table.stdout
    failing = cli(tmp_path, "plugins", "--fail-on-error")
    assert failing.returncode == 1


def test_strict_plugins_command_exits_with_an_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dist, _ = install_fault(tmp_path, "import_raises", monkeypatch)
    others = ",".join(builtin_failures())
    strict = {"HYBRIDZOO_STRICT_PLUGINS": "1", "HYBRIDZOO_DISABLE_PLUGINS": others}
    done = cli(tmp_path, "plugins", env=strict)
    assert done.returncode == 1
    assert dist in done.stderr and "strict" in done.stderr
    assert "Traceback" not in done.stderr


# -- conflicts are errors when used ----------------------------------------------------------------


def test_a_contested_symbol_is_an_error_when_used(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dist, _ = install_fault(tmp_path, "claims_existing_symbol", monkeypatch)
    registry = Registry()
    with pytest.raises(PluginConflictError, match=dist):
        registry.by_symbol("F")
    with hybridzoo.use_registry(registry), pytest.raises(PluginConflictError):
        hybridzoo.build("F", embed_dim=8, hidden_size=16)


@pytest.mark.parametrize("dist_first", [False, True], ids=["builtin-first", "plugin-first"])
def test_a_contested_name_is_an_error_when_used(
    dist_first: bool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # distributions load in name order: "aaa-..." before "hybridzoo", "hybridzoo-..." after
    dist = "aaa-fake-claims-ffn" if dist_first else "hybridzoo-fake-claims-ffn"
    source = spec_module("ffn", "Q", "fakeq")
    install_distribution(monkeypatch, tmp_path, dist, "fake_claims_ffn", source, "cf")
    registry = Registry()
    assert any(dist in (p.error or "") for p in registry.failures())
    with pytest.raises(PluginConflictError, match=dist):
        registry.get("ffn")


def test_a_contested_named_pattern_or_option_is_an_error_when_used(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    install_fault(tmp_path, "claims_existing_pattern", monkeypatch)
    install_fault(tmp_path / "more", "claims_overlapping_option", monkeypatch)
    registry = Registry()
    with pytest.raises(PluginConflictError, match="hybridzoo-fake-claims-existing-pattern"):
        hybridzoo.expand_named_pattern("jamba_like", 2, registry=registry)
    contested = registry.contested()
    assert {"pattern:jamba_like", "option:ffn_expand_factor", "name:fakeover"} <= set(contested)
    with hybridzoo.use_registry(registry):
        hybridzoo.build("F F", embed_dim=4, hidden_size=8)  # ffn itself is fine
        with pytest.raises(PluginConflictError, match="ffn_expand_factor"):
            hybridzoo.build("F F", embed_dim=4, hidden_size=8, ffn_expand_factor=2)


def test_ctrl_c_while_a_plugin_loads_leaves_nothing_half_loaded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dist, ep_name = "hybridzoo-fake-slow", "fake_slow"
    source = "raise KeyboardInterrupt\n"
    install_distribution(monkeypatch, tmp_path, dist, "fake_slow_plugin", source, ep_name)
    registry = Registry()
    with pytest.raises(KeyboardInterrupt):
        registry.names()
    assert "not loaded" in repr(registry)
    assert registry.interrupted is not None
    assert (registry.interrupted.name, registry.interrupted.distribution) == (ep_name, dist)
    with pytest.raises(KeyboardInterrupt):  # loads again on the next use: never silently empty
        registry.get("ffn")
    assert "ffn" in Registry(disabled=[ep_name]).names()
    done = cli(tmp_path, "plugins")
    assert done.returncode == 130
    assert f"plugin {ep_name!r}" in done.stderr and dist in done.stderr
    assert f"HYBRIDZOO_DISABLE_PLUGINS={ep_name}" in done.stderr


def test_the_version_1_named_pattern_form_still_works(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = textwrap.dedent(
        """
        import hybridzoo

        @hybridzoo.hookimpl
        def hybridzoo_named_patterns():
            return {"ffn_pairs": lambda n: ["ffn"] * (2 * n)}
        """
    )
    install_distribution(
        monkeypatch, tmp_path, "hybridzoo-fake-v1", "fake_v1_plugin", source, "fakev1"
    )
    registry = Registry()
    assert record_of(registry, "fakev1").patterns == ["ffn_pairs"]
    assert hybridzoo.expand_named_pattern("ffn_pairs", 2, registry=registry) == ["ffn"] * 4
    (info,) = hybridzoo.list_patterns("ffn_pairs", registry=registry)
    assert info.available and info.source == "hybridzoo-fake-v1"


# -- a working fake plugin, and the switches -------------------------------------------------------


def test_a_good_fake_plugin_is_discovered_and_mixes_with_builtins(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import torch

    registry = install_layer(monkeypatch, tmp_path, "hybridzoo-fake-good", "fakegood", "fakegood")
    assert registry.source("fakegood") == ("hybridzoo-fake-good", "1.0")
    assert record_of(registry, "fakegood").status == "loaded"
    with hybridzoo.use_registry(registry):
        model = hybridzoo.build("F Q F", embed_dim=8, hidden_size=16, fakegood_width=2)
        assert model(torch.randn(2, 4, 8)).shape == (2, 16)
        assert model.param_count() == hybridzoo.param_count(
            "F Q F", embed_dim=8, hidden_size=16, fakegood_width=2
        )
    layers = cli(tmp_path, "layers")
    assert "fakegood" in layers.stdout and "hybridzoo-fake-good" in layers.stdout


@pytest.mark.parametrize("by", ["entry_point", "distribution"])
def test_disable_one_plugin(by: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    dist, ep_name = install_fault(tmp_path, "import_raises", monkeypatch)
    others = builtin_failures()
    monkeypatch.setenv(
        "HYBRIDZOO_DISABLE_PLUGINS", ",".join([ep_name if by == "entry_point" else dist, *others])
    )
    monkeypatch.setenv("HYBRIDZOO_STRICT_PLUGINS", "1")  # the disabled plugin is not even imported
    registry = Registry()
    record = record_of(registry, ep_name)
    assert record.status == "disabled"
    assert "HYBRIDZOO_DISABLE_PLUGINS" in (record.error or "")
    assert record not in registry.failures()
    assert "fake_import_raises_plugin" not in sys.modules
    build_with_builtins(registry)
    done = cli(tmp_path, "plugins", "--json", env={"HYBRIDZOO_DISABLE_PLUGINS": ep_name})
    (plugin,) = [p for p in json.loads(done.stdout)["plugins"] if p["name"] == ep_name]
    assert plugin["status"] == "disabled"


def test_disable_autoload(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    install_fault(tmp_path, "import_raises", monkeypatch)
    monkeypatch.setenv("HYBRIDZOO_DISABLE_PLUGIN_AUTOLOAD", "1")
    registry = Registry()
    assert registry.autoload is False
    assert registry.names() == []
    assert registry.plugins() == []
    # run-time registration still works, through the same validation
    source: dict[str, object] = {}
    exec(spec_module("userlayer", "U", "userlayer"), source)
    registry.register(source["SPEC"])  # type: ignore[arg-type]
    with hybridzoo.use_registry(registry):
        assert hybridzoo.build("U U", embed_dim=4, hidden_size=8)(torch.randn(1, 2, 4)).shape == (
            1,
            8,
        )
    done = cli(tmp_path, "plugins", "--json", env={"HYBRIDZOO_DISABLE_PLUGIN_AUTOLOAD": "1"})
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["autoload"] is False and report["plugins"] == []
    layers = cli(tmp_path, "layers", env={"HYBRIDZOO_DISABLE_PLUGIN_AUTOLOAD": "1"})
    assert layers.returncode == 0, layers.stderr
    assert "fake_import_raises" not in layers.stdout


def test_an_entry_point_named_like_a_builtin_one_still_loads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    registry = install_layer(monkeypatch, tmp_path, "hybridzoo-fake-dup", "betterffn", "ffn")
    assert registry.source("betterffn") == ("hybridzoo-fake-dup", "1.0")
    assert registry.source("ffn") == (BUILTIN_DIST, hybridzoo.__version__)


def test_plugins_report_shows_run_time_layers(tmp_path: Path) -> None:
    import argparse
    import io

    from hybridzoo import plugins_report

    source: dict[str, object] = {}
    exec(spec_module("userlayer", "U", "userlayer"), source)
    registry = Registry(autoload=False)
    registry.register(source["SPEC"])  # type: ignore[arg-type]
    with hybridzoo.use_registry(registry):
        out = io.StringIO()
        assert plugins_report.run(argparse.Namespace(json=False), stdout=out) == 0
        report = plugins_report.collect()
    assert "<runtime>" in out.getvalue() and "(registered at run time)" in out.getvalue()
    assert "userlayer (U, userlayer_*)" in out.getvalue()
    assert "autoload off" in out.getvalue()
    (runtime,) = report["plugins"]
    assert runtime["layers"][0]["symbol"] == "U" and runtime["layers"][0]["stateful"] is True
    assert report["counts"] == {"loaded": 1, "failed": 0, "disabled": 0}


def test_plugins_report_lists_contested_keys(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dist, _ = install_fault(tmp_path, "claims_existing_symbol", monkeypatch)
    done = cli(tmp_path, "plugins", "--json")
    assert done.returncode == 0, done.stderr
    contested = json.loads(done.stdout)["contested"]
    assert "symbol:F" in contested and dist in contested["symbol:F"]
    table = cli(tmp_path, "plugins")
    assert "Contested" in table.stdout and "symbol 'F'" in table.stdout

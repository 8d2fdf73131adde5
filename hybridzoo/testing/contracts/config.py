"""Contract ``config``: the options survive the config's JSON round trip."""

from __future__ import annotations

import json

import torch

from hybridzoo.config import HybridConfig
from hybridzoo.errors import HybridZooError
from hybridzoo.registry import use_registry
from hybridzoo.testing.case import LayerCase, build_model, model_config, private_registry
from hybridzoo.testing.catalog import register
from hybridzoo.testing.results import CheckFailure

# pytest hides the kit's own frames from tracebacks: the author sees the failure first
__tracebackhide__ = True


@register("config_round_trip", "config")
def check_config_round_trip(case: LayerCase) -> None:
    """A config holding the layer's options survives ``to_dict`` → JSON → ``from_dict`` (equal
    config and options record), and the model rebuilt from it has the same parameter names,
    shapes and count, and with the first model's weights the same outputs (exactly)."""
    registry = private_registry(case.spec)
    with use_registry(registry):
        config = model_config(case, registry)
        data = config.to_dict()
        try:
            text = json.dumps(data)
        except (TypeError, ValueError) as exc:
            raise CheckFailure(f"config.to_dict() is not JSON-serialisable: {exc}") from exc
        try:
            again = HybridConfig.from_dict(json.loads(text), registry=registry)
        except HybridZooError as exc:
            raise CheckFailure(f"from_dict(to_dict()) raised: {exc}") from exc
        if again.layer_options[case.name] != case.options:
            raise CheckFailure(
                f"the options record changed in the round trip: {case.options!r} became "
                f"{again.layer_options[case.name]!r}"
            )
        if again != config:
            raise CheckFailure(f"the config changed in the round trip: {config!r} became {again!r}")
        first = build_model(config, case, registry)
        second = build_model(again, case, registry)
    shapes1 = {k: tuple(v.shape) for k, v in first.state_dict().items()}
    shapes2 = {k: tuple(v.shape) for k, v in second.state_dict().items()}
    if shapes1 != shapes2:
        diff = sorted(set(shapes1.items()) ^ set(shapes2.items()))[:6]
        raise CheckFailure(f"the rebuilt model has other parameters/buffers: {diff}")
    second.load_state_dict(first.state_dict())
    x = case.randn(case.batch, case.length, case.hidden_size + 1, offset=2)
    with torch.no_grad():
        if not torch.equal(first(x), second(x)):
            raise CheckFailure("the rebuilt model with the same weights gives other outputs")

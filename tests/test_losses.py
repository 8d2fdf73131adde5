"""``hybridzoo.aux_losses`` and the recorder behind bodies' ``aux_losses()``."""

from __future__ import annotations

import attrs
import pytest
import torch
from torch import nn

import hybridzoo
from hybridzoo.losses import AuxLossRecorder
from hybridzoo.nn import Positionwise


class Scaled(Positionwise):
    """A toy body ``x · w`` whose auxiliary loss is ``mean((x·w)²)`` (training mode)."""

    def __init__(self, hidden_size: int) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.ones(hidden_size))
        self._aux = AuxLossRecorder("scaled")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x * self.w
        if self.training:
            self._aux.record({"square": y.square().mean()}, output=y)
        return y

    def aux_losses(self) -> dict[str, torch.Tensor]:
        return self._aux.read()


@attrs.frozen
class NoOptions:
    pass


def _spec(name: str, symbol: str, sub_blocks: int = 1) -> hybridzoo.LayerSpec:
    return hybridzoo.LayerSpec(
        name=name,
        symbol=symbol,
        option_prefix=name,
        options=NoOptions,
        factory=lambda o, h: [Scaled(h) for _ in range(sub_blocks)],
        param_count=lambda o, h: sub_blocks * h,
        capabilities=hybridzoo.Capabilities(stateful=True),
        sub_blocks=sub_blocks,
    )


@pytest.fixture
def layers():
    with hybridzoo.temporary_layers(_spec("scaled", "Q"), _spec("twice", "W", sub_blocks=2)):
        yield


def test_keys_name_position_layer_and_loss(layers) -> None:
    model = hybridzoo.build("F Q W", embed_dim=4, hidden_size=4, dropout=0.0).train()
    model(torch.randn(2, 3, 4))
    assert set(hybridzoo.aux_losses(model)) == {
        "2.scaled.square",
        "3.twice.1.square",
        "3.twice.2.square",
    }


def test_shared_layer_sums_its_applications(layers) -> None:
    model = hybridzoo.build(
        "F F F", embed_dim=4, hidden_size=4, dropout=0.0, shared_layers={"scaled": [1, 3]}
    ).train()
    x = torch.randn(2, 3, 4)
    model(x)
    aux = hybridzoo.aux_losses(model)
    assert set(aux) == {"shared.scaled.square"}
    body = model.shared["scaled"].sub_blocks[0].body
    calls = []
    body.register_forward_hook(lambda m, args, out: calls.append(args[0]))
    model(x)
    expected = sum(inp.square().mean() for inp in calls)
    torch.testing.assert_close(hybridzoo.aux_losses(model)["shared.scaled.square"], expected)
    assert len(calls) == 2


def test_training_loop_adds_them_to_the_loss(layers) -> None:
    model = hybridzoo.build("Q", embed_dim=4, hidden_size=4, dropout=0.0, output="sequence")
    model.train()
    body = model.blocks[0].sub_blocks[0].body
    x = torch.randn(2, 3, 4)
    grads = []
    for with_aux in (False, True, False):
        # a step that does not read them must not leak into the next one
        model.zero_grad()
        loss = model(x).square().sum()
        if with_aux:
            loss = loss + sum(hybridzoo.aux_losses(model).values())
        loss.backward()
        grads.append(body.w.grad.clone())
    torch.testing.assert_close(grads[0], grads[2])
    model.zero_grad()
    model(x)
    sum(hybridzoo.aux_losses(model).values()).backward()
    assert body.w.grad.abs().max() > 1e-3
    torch.testing.assert_close(grads[1] - grads[0], body.w.grad)


def test_model_without_aux_losses_gives_empty_dict() -> None:
    model = hybridzoo.build("F", embed_dim=4, hidden_size=4)
    model(torch.randn(1, 2, 4))
    assert hybridzoo.aux_losses(model) == {}
    assert sum(hybridzoo.aux_losses(model).values()) == 0


def test_plain_module_paths() -> None:
    body = Scaled(3).train()
    body(torch.randn(2, 3))
    assert set(hybridzoo.aux_losses(body)) == {"square"}
    holder = nn.Sequential(nn.Identity(), body)
    assert set(hybridzoo.aux_losses(holder)) == {"1.square"}


def test_recorder_sums_the_calls_of_one_step() -> None:
    rec = AuxLossRecorder()
    one, two, three = (torch.tensor(v, requires_grad=True) for v in (1.0, 2.0, 3.0))
    rec.record({"a": one})
    rec.record({"a": two})
    assert rec.read()["a"].item() == 3.0
    assert rec.read()["a"].item() == 3.0  # reading again gives the same
    rec.record({"a": three})  # the first call after a read starts afresh
    assert rec.read()["a"].item() == 3.0
    out = torch.ones(2, requires_grad=True) * 2
    rec.record({"a": one}, output=out)
    out.sum().backward()  # a backward through the output ends the step
    rec.record({"a": two})
    assert rec.read()["a"].item() == 2.0
    with torch.no_grad():  # without gradients only the last call is kept
        rec.record({"a": torch.tensor(5.0)})
        rec.record({"a": torch.tensor(7.0)})
    assert rec.read()["a"].item() == 7.0
    rec.clear()
    assert rec.read() == {}


def test_recorder_warns_when_never_read() -> None:
    rec = AuxLossRecorder("moe", max_unread=3)
    match = "neither read nor back-propagated.*hybridzoo.aux_losses"
    with pytest.warns(RuntimeWarning, match=match):
        for _ in range(5):
            rec.record({"a": torch.ones((), requires_grad=True)})
    assert rec.read()["a"].item() == 3.0  # the older ones were dropped


def test_bad_aux_losses_is_a_plugin_error() -> None:
    class Bad(nn.Module):
        def aux_losses(self):
            return {"x": 1.0}

    with pytest.raises(
        hybridzoo.PluginError, match=r"Bad.aux_losses\(\).*dict of names to tensors"
    ):
        hybridzoo.aux_losses(nn.Sequential(Bad()))

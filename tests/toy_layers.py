"""Small layers defined the way a user would in their own script (used by the core tests)."""

from __future__ import annotations

import attrs
import torch
from torch import nn

import hybridzoo
from hybridzoo.plugin import Capabilities, at_least


class CausalConv(nn.Module):
    """Depthwise causal convolution with a step mode (a window of the last ``k - 1`` inputs)."""

    def __init__(self, hidden_size: int, kernel_size: int) -> None:
        super().__init__()
        self.k = kernel_size
        self.weight = nn.Parameter(torch.randn(hidden_size, kernel_size) / kernel_size)
        self.bias = nn.Parameter(torch.zeros(hidden_size))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.prefill(x)[0]

    def init_state(self, batch_size: int) -> tuple[torch.Tensor]:
        p = self.weight
        return (torch.zeros(batch_size, self.k - 1, p.shape[0], dtype=p.dtype, device=p.device),)

    def prefill(self, x, state=None):
        window = self.init_state(x.shape[0])[0] if state is None else state[0]
        full = torch.cat([window, x], dim=1)  # [B, k-1+L, H]
        cols = full.unfold(1, self.k, 1)  # [B, L, H, k]
        y = (cols * self.weight).sum(-1) + self.bias
        return y, (full[:, full.shape[1] - (self.k - 1) :].clone(),)

    def step(self, x_t, state):
        y, new = self.prefill(x_t.unsqueeze(1), state)
        return y.squeeze(1), new


@attrs.frozen
class ConvOptions:
    kernel_size: int = hybridzoo.option(
        3, doc="Causal kernel length.", validator=at_least(1), examples=(1, 2, 4)
    )


def conv_spec(name: str = "conv", symbol: str = "C", prefix: str | None = None):
    return hybridzoo.LayerSpec(
        name=name,
        symbol=symbol,
        option_prefix=prefix or name,
        options=ConvOptions,
        factory=lambda o, h: CausalConv(h, o.kernel_size),
        param_count=lambda o, h: h * o.kernel_size + h,
        description="Depthwise causal convolution.",
        capabilities=hybridzoo.Capabilities(causal=True, stateful=True),
        state_size=lambda o, h: (o.kernel_size - 1) * h,
    )


@attrs.frozen
class MLPOptions:
    inner: int = hybridzoo.option(8, doc="Inner width.", validator=at_least(1), examples=(2, 4))


def make_mlp(options: MLPOptions, hidden_size: int) -> nn.Module:
    """A per-position body with ``forward`` only (no step protocol of its own)."""
    return nn.Sequential(
        nn.Linear(hidden_size, options.inner), nn.GELU(), nn.Linear(options.inner, hidden_size)
    )


def mlp_spec(name: str = "mlp", symbol: str = "P"):
    """A positionwise layer: declares ``Capabilities(positionwise=True)`` and nothing else about
    its step mode; its width follows the model width when scaled (``inner = hidden // 2``)."""
    return hybridzoo.LayerSpec(
        name=name,
        symbol=symbol,
        option_prefix=name,
        options=MLPOptions,
        factory=make_mlp,
        param_count=lambda o, h: 2 * h * o.inner + o.inner + h,
        description="Two-layer perceptron at each position.",
        capabilities=Capabilities(positionwise=True),
        scale_options=lambda o, h, *, seq_len=None: attrs.evolve(o, inner=max(1, h // 2)),
    )

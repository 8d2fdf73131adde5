"""A short depthwise causal convolution over time with a fused SiLU (Mamba-2's and Gated DeltaNet's
``conv1d``), channel-last, with a step mode.

``y[b, t, c] = silu(bias[c] + Σ_j weight[c, 0, j] · x[b, t - (K-1) + j, c])``; the ``K - 1``
inputs before the first position come from a window ``[B, C, K-1]`` (zeros by default). The
sequence form runs in :func:`hybridzoo.ops.causal_conv1d`.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from hybridzoo.ops import causal_conv1d
from hybridzoo.validate import at_least, boolean, one_of

__all__ = ["ShortConvolution", "conv_step"]


def conv_step(
    x_t: Tensor, window: Tensor, weight: Tensor, bias: Tensor | None, activation: str | None
) -> Tensor:
    """One position of a depthwise causal convolution: ``x_t [B, C]``, ``weight [C, K]``;
    ``window [B, C, K-1]`` (the previous inputs, oldest first) is updated in place."""
    full = torch.cat([window, x_t.unsqueeze(-1)], dim=-1)  # [B, C, K]
    y = (full * weight).sum(-1)
    if bias is not None:
        y = y + bias
    window.copy_(full[:, :, 1:])
    return F.silu(y) if activation == "silu" else y


class ShortConvolution(nn.Module):
    """Depthwise causal convolution of ``channels`` channels with a kernel of ``kernel_size``.

    Args:
        channels: ``C``.
        kernel_size: ``K`` (1 = a per-channel scale).
        bias: a bias per channel. Default False.
        activation: ``"silu"`` or ``None``. Default ``"silu"``.
        device, dtype: where and how to create the parameters.

    Parameters ``weight [C, 1, K]`` and ``bias [C]``: the names and shapes of
    ``nn.Conv1d(C, C, K, groups=C)``, so transformers' and fla's ``conv1d`` weights load as they
    are; initialised as ``nn.Conv1d``.
    """

    def __init__(
        self,
        channels: int,
        kernel_size: int,
        *,
        bias: bool = False,
        activation: str | None = "silu",
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        self.channels = at_least(1).check("channels", channels)
        self.kernel_size = at_least(1).check("kernel_size", kernel_size)
        self.activation = one_of("silu", None).check("activation", activation)
        fk = {"device": device, "dtype": dtype}
        self.weight = nn.Parameter(torch.empty(channels, 1, kernel_size, **fk))
        has_bias = boolean.check("bias", bias)
        self.bias = nn.Parameter(torch.empty(channels, **fk)) if has_bias else None
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """``nn.Conv1d``'s initialisation (uniform in ``±1/√K`` for a depthwise kernel)."""
        bound = 1 / math.sqrt(self.kernel_size)
        nn.init.uniform_(self.weight, -bound, bound)
        if self.bias is not None:
            nn.init.uniform_(self.bias, -bound, bound)

    def forward(
        self,
        x: Tensor,
        initial_window: Tensor | None = None,
        *,
        output_final_window: bool = False,
        seq_idx: Tensor | None = None,
    ) -> tuple[Tensor, Tensor | None]:
        """``x [B, T, C]`` (any strides) → ``(y [B, T, C], the last K-1 inputs [B, C, K-1] or
        None)``, from ``initial_window`` (None: zeros). With ``seq_idx [B, T]`` (packed
        documents) no output reads another document's inputs; the window belongs to a row's
        first document, the final window to its last."""
        return causal_conv1d(
            x,
            self.weight.squeeze(1),
            self.bias,
            initial_window=initial_window,
            activation=self.activation,
            output_final_window=output_final_window,
            seq_idx=seq_idx,
        )

    def init_window(self, batch_size: int) -> Tensor:
        """A zero window ``[B, C, K-1]`` in the module's device and dtype."""
        return self.weight.new_zeros(batch_size, self.channels, self.kernel_size - 1)

    def step(self, x_t: Tensor, window: Tensor) -> Tensor:
        """One position: ``x_t [B, C] -> y_t [B, C]``; ``window [B, C, K-1]`` is updated in place
        (inference only: autograd does not go through the update)."""
        return conv_step(x_t, window, self.weight.squeeze(1), self.bias, self.activation)

    def extra_repr(self) -> str:
        return (
            f"{self.channels}, kernel_size={self.kernel_size}, bias={self.bias is not None}, "
            f"activation={self.activation!r}"
        )

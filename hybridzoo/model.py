"""``HybridModel``: input projection, residual blocks from plugins, shared blocks, final norm.

Every pattern entry is a block of one or more pre-norm residual sub-blocks
``x + dropout(body(LayerNorm(x)))``, whose bodies the layer's plugin builds. A shared layer is one
block (one set of weights) applied after each of its listed positions. The model runs in three
modes that agree with each other: ``forward`` (parallel over the sequence), ``step`` (one position
at a time, from :meth:`HybridModel.init_state`) and ``prefill`` (parallel over a chunk, from and to
a state).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from hybridzoo.config import HybridConfig
from hybridzoo.errors import PluginError, ShapeError, StateError
from hybridzoo.nn.positionwise import positionwise_prefill, positionwise_step
from hybridzoo.registry import Registry, get_registry
from hybridzoo.spec import LayerSpec

__all__ = ["HybridModel", "HybridState", "LayerBlock", "ResidualBlock", "build_bodies"]

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"


def build_bodies(spec: LayerSpec, options: Any, hidden_size: int) -> list[nn.Module]:
    """Call a spec's factory and check what it returns (a body or ``sub_blocks`` bodies)."""
    made = spec.factory(options, hidden_size)
    bodies = list(made) if isinstance(made, Sequence) else [made]
    count = spec.num_sub_blocks(options)
    if len(bodies) != count or not all(isinstance(b, nn.Module) for b in bodies):
        raise PluginError(
            f"layer {spec.name!r}: the factory must return {count} nn.Module "
            f"bod{'y' if count == 1 else 'ies'} (spec.sub_blocks), got {made!r:.120}"
        )
    return bodies


class ResidualBlock(nn.Module):
    """``x + dropout(body(LayerNorm(x)))``, with the body's step protocol passed through (or the
    core's, for a body of a positionwise layer)."""

    def __init__(
        self,
        body: nn.Module,
        hidden_size: int,
        dropout: float,
        eps: float,
        *,
        positionwise: bool = False,
    ) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(hidden_size, eps=eps)
        self.body = body
        self.dropout = nn.Dropout(dropout)
        self.positionwise = positionwise

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.dropout(self.body(self.norm(x)))

    def init_state(self, batch_size: int) -> Any:
        return () if self.positionwise else self.body.init_state(batch_size)

    def step(self, x_t: torch.Tensor, state: Any) -> tuple[torch.Tensor, Any]:
        h = self.norm(x_t)
        y, state = (
            positionwise_step(self.body, h) if self.positionwise else self.body.step(h, state)
        )
        return x_t + self.dropout(y), state

    def prefill(self, x: torch.Tensor, state: Any) -> tuple[torch.Tensor, Any]:
        h = self.norm(x)
        if self.positionwise:
            y, state = positionwise_prefill(self.body, h)
        else:
            y, state = self.body.prefill(h, state)
        return x + self.dropout(y), state


class LayerBlock(nn.Module):
    """The block of one pattern entry: its sub-blocks in order."""

    def __init__(self, spec: LayerSpec, options: Any, config: HybridConfig) -> None:
        super().__init__()
        self.layer = spec.name
        self.stateful = spec.capabilities.step_mode
        bodies = build_bodies(spec, options, config.hidden_size)
        positionwise = spec.capabilities.positionwise
        self.sub_blocks = nn.ModuleList(
            ResidualBlock(
                b, config.hidden_size, config.dropout, config.norm_eps, positionwise=positionwise
            )
            for b in bodies
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.sub_blocks:
            x = block(x)
        return x

    def init_state(self, batch_size: int) -> list[Any]:
        return [block.init_state(batch_size) for block in self.sub_blocks]

    def step(self, x_t: torch.Tensor, state: list[Any]) -> tuple[torch.Tensor, list[Any]]:
        for i, block in enumerate(self.sub_blocks):
            x_t, state[i] = block.step(x_t, state[i])
        return x_t, state

    def prefill(self, x: torch.Tensor, state: list[Any] | None) -> tuple[torch.Tensor, list[Any]]:
        new: list[Any] = []
        for i, block in enumerate(self.sub_blocks):
            x, s = block.prefill(x, None if state is None else state[i])
            new.append(s)
        return x, new


class HybridState:
    """Step-mode state of a :class:`HybridModel`: one entry per block application, plus the
    number of positions consumed so far (used by the sinusoidal encoding)."""

    __slots__ = ("batch_size", "layers", "position")

    def __init__(self, layers: list[Any], batch_size: int, position: int = 0) -> None:
        self.layers = layers
        self.batch_size = batch_size
        self.position = position

    def __repr__(self) -> str:
        return (
            f"HybridState(batch_size={self.batch_size}, position={self.position}, "
            f"{len(self.layers)} blocks)"
        )


class HybridModel(nn.Module):
    """A hybrid sequence model; build one with :func:`hybridzoo.build`.

    ``forward(x [B, L, embed_dim])`` returns ``[B, hidden_size]`` (``output="last"``: the final
    norm at the last position) or ``[B, L, hidden_size]`` (``output="sequence"``).
    """

    def __init__(self, config: HybridConfig, *, registry: Registry | None = None) -> None:
        super().__init__()
        if not isinstance(config, HybridConfig):
            raise TypeError(
                f"HybridModel takes a HybridConfig, got {type(config).__name__}; "
                "use hybridzoo.build(pattern, embed_dim=...) to build from a pattern"
            )
        registry = registry or get_registry()
        self.config = config
        specs = config.specs(registry)
        H = config.hidden_size
        self.input_proj = nn.Linear(config.embed_dim, H) if config.embed_dim != H else None
        self.blocks = nn.ModuleList(
            LayerBlock(specs[name], config.layer_options[name], config) for name in config.pattern
        )
        self.shared = nn.ModuleDict(
            {
                name: LayerBlock(specs[name], config.layer_options[name], config)
                for name, _ in config.shared_layers
            }
        )
        self.norm = nn.LayerNorm(H, eps=config.norm_eps)
        self._order: list[LayerBlock] = [
            self.blocks[i] if i is not None else self.shared[name]  # type: ignore[misc]
            for name, i in config.schedule()
        ]
        self._stateless = sorted({b.layer for b in self._order if not b.stateful})

    # -- helpers -------------------------------------------------------------------------------

    def _positions(self, start: int, length: int, like: torch.Tensor) -> torch.Tensor:
        """The standard (Vaswani) sinusoidal encoding for positions ``start .. start+length-1``."""
        H = self.config.hidden_size
        pos = torch.arange(start, start + length, device=like.device, dtype=torch.float64)
        i = torch.arange(0, H, 2, device=like.device, dtype=torch.float64)
        angle = pos[:, None] / torch.pow(10000.0, i / H)[None, :]  # [L, ceil(H/2)]
        pe = torch.empty(length, H, device=like.device, dtype=torch.float64)
        pe[:, 0::2] = torch.sin(angle)
        pe[:, 1::2] = torch.cos(angle[:, : H // 2])
        return pe.to(like.dtype)

    def _embed(self, x: torch.Tensor, start: int) -> torch.Tensor:
        if x.dim() != 3 or x.shape[-1] != self.config.embed_dim:
            raise ShapeError(
                f"expected input [batch, seq_len, {self.config.embed_dim}] (embed_dim), got "
                f"shape {list(x.shape)}"
            )
        if x.shape[1] < 1:
            raise ShapeError("the sequence length must be >= 1, got an empty sequence")
        h = self.input_proj(x) if self.input_proj is not None else x
        if self.config.positional_encoding == "sinusoidal":
            h = h + self._positions(start, x.shape[1], h)
        return h

    def _readout(self, h: torch.Tensor) -> torch.Tensor:
        if self.config.output == "last":
            return self.norm(h[:, -1])
        return self.norm(h)

    # -- the three modes -----------------------------------------------------------------------

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, L, embed_dim]`` → ``[B, hidden]`` (``output="last"``) or ``[B, L, hidden]``."""
        h = self._embed(x, 0)
        for block in self._order:
            h = block(h)
        return self._readout(h)

    def _require_step_mode(self) -> None:
        if self._stateless:
            raise StateError(
                f"step mode needs stateful layers; {', '.join(map(repr, self._stateless))} "
                "declare capabilities.stateful=False (no init_state/step)"
            )

    def init_state(self, batch_size: int) -> HybridState:
        """A fresh step-mode state for ``batch_size`` sequences (on the model's device/dtype)."""
        self._require_step_mode()
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise StateError(f"batch_size must be an integer >= 1, got {batch_size!r}")
        return HybridState([b.init_state(batch_size) for b in self._order], batch_size)

    def step(self, x_t: torch.Tensor, state: HybridState) -> tuple[torch.Tensor, HybridState]:
        """One position: ``x_t [B, embed_dim]`` → ``(y_t [B, hidden], state)``.

        Stepping through a sequence gives ``forward`` with ``output="sequence"`` position by
        position. The state is updated in place and returned.
        """
        if not isinstance(state, HybridState):
            raise StateError(
                f"expected a HybridState from init_state(), got {type(state).__name__}"
            )
        if x_t.dim() != 2 or x_t.shape[-1] != self.config.embed_dim:
            raise ShapeError(
                f"step takes x_t of shape [batch, {self.config.embed_dim}], got {list(x_t.shape)}"
            )
        if x_t.shape[0] != state.batch_size:
            raise StateError(
                f"x_t has batch size {x_t.shape[0]} but the state was made for {state.batch_size}"
            )
        h = self.input_proj(x_t) if self.input_proj is not None else x_t
        if self.config.positional_encoding == "sinusoidal":
            h = h + self._positions(state.position, 1, h)[0]
        layers = state.layers
        for i, block in enumerate(self._order):
            h, layers[i] = block.step(h, layers[i])
        state.position += 1
        return self.norm(h), state

    def prefill(
        self, x: torch.Tensor, state: HybridState | None = None
    ) -> tuple[torch.Tensor, HybridState]:
        """Run a chunk ``[B, L, embed_dim]`` in parallel from ``state`` (fresh when ``None``);
        returns the output (as ``forward``) and the state after the chunk, ready for ``step``."""
        self._require_step_mode()
        if state is not None and state.batch_size != x.shape[0]:
            raise StateError(
                f"x has batch size {x.shape[0]} but the state was made for {state.batch_size}"
            )
        start = 0 if state is None else state.position
        h = self._embed(x, start)
        new: list[Any] = []
        for i, block in enumerate(self._order):
            h, s = block.prefill(h, None if state is None else state.layers[i])
            new.append(s)
        return self._readout(h), HybridState(new, x.shape[0], start + x.shape[1])

    # -- sizes and persistence -------------------------------------------------------------------

    def num_parameters(self) -> int:
        """Parameters of the model (shared weights once); equals :func:`hybridzoo.param_count`."""
        return sum(p.numel() for p in self.parameters())

    def save(self, directory: str | Path) -> Path:
        """Write ``config.json`` and ``model.safetensors`` into ``directory`` (created)."""
        from safetensors.torch import save_file

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        (directory / CONFIG_FILE).write_text(self.config.to_json() + "\n")
        tensors = {k: v.detach().contiguous().cpu() for k, v in self.state_dict().items()}
        save_file(tensors, str(directory / WEIGHTS_FILE), metadata={"format": "pt"})
        return directory

    @classmethod
    def load(
        cls, directory: str | Path, *, device: str | torch.device | None = None
    ) -> HybridModel:
        """Rebuild a model written by :meth:`save` (same outputs)."""
        from safetensors.torch import load_file

        directory = Path(directory)
        config = HybridConfig.from_dict(json.loads((directory / CONFIG_FILE).read_text()))
        model = cls(config)
        tensors = load_file(str(directory / WEIGHTS_FILE), device=str(device or "cpu"))
        model.load_state_dict(tensors)
        return model.to(device) if device is not None else model

    def extra_repr(self) -> str:
        return f"pattern={' '.join(self.config.pattern)!r}, hidden_size={self.config.hidden_size}"

"""``HybridModel``: input projection, residual blocks from plugins, shared blocks, final norm.

Every pattern entry is a block of one or more pre-norm residual sub-blocks
``x + dropout(body(norm(x)))``, whose bodies the layer's plugin builds; ``norm`` is LayerNorm or
RMSNorm (the ``norm`` model option), as is the final norm. A shared layer is one block (one set
of weights) applied after each of its listed positions. The model runs in three modes that agree
with each other: ``forward`` (parallel over the sequence), ``step`` (one position at a time, from
:meth:`HybridModel.init_state`) and ``prefill`` (parallel over a chunk, from and to a state).

Step mode (``init_state``, ``step``, ``prefill``) is for inference: states are updated in place
and autograd does not run through them; train with ``forward``.

Packed documents (``forward(x, seq_idx=...)``, see :mod:`hybridzoo.packing`) reach every body
but the per-position ones; the sinusoidal encoding restarts at each document.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from hybridzoo.checkpoint import Checkpointed
from hybridzoo.config import HybridConfig
from hybridzoo.errors import ConfigError, ShapeError, StateError, StepModeWarning
from hybridzoo.nn.positionwise import Positionwise, positionwise_prefill, positionwise_step
from hybridzoo.nn.sinusoid import sinusoidal_encoding
from hybridzoo.norms import make_norm
from hybridzoo.packing import document_positions, packed_seq_idx
from hybridzoo.plugin_calls import plugin_call, plugin_error
from hybridzoo.registry import Registry, get_registry
from hybridzoo.spec import LayerSpec
from hybridzoo.state import HybridState, check_state, state_fingerprint
from hybridzoo.validate import at_least

__all__ = [
    "HybridModel",
    "HybridState",
    "LayerBlock",
    "ResidualBlock",
    "build_bodies",
]


def build_bodies(
    spec: LayerSpec, options: Any, hidden_size: int, *, registry: Registry | None = None
) -> list[nn.Module]:
    """Call a spec's factory and check what it returns (a body or ``sub_blocks`` bodies).

    A factory that raises, or returns anything else, is a :class:`~hybridzoo.PluginError`
    naming the layer and its distribution (the original exception chained)."""
    try:
        made = spec.factory(options, hidden_size)
    except Exception as exc:
        problem = f"its factory raised {type(exc).__name__}: {exc} (options {options!r:.200})"
        raise plugin_error(spec, problem, registry) from exc
    bodies = list(made) if isinstance(made, Sequence) else [made]
    count = plugin_call(spec, "sub_blocks", spec.num_sub_blocks, options, registry=registry)
    if len(bodies) != count or not all(isinstance(b, nn.Module) for b in bodies):
        raise plugin_error(
            spec,
            f"the factory must return {count} nn.Module "
            f"bod{'y' if count == 1 else 'ies'} (spec.sub_blocks), got {made!r:.120}",
            registry,
        )
    return bodies


class ResidualBlock(nn.Module):
    """``x + dropout(body(norm(x)))``, with the body's step protocol passed through (or the
    core's, for a body of a positionwise layer). Packed documents (``seq_idx``) reach the body
    unless it acts per position (a positionwise layer's, or a :class:`Positionwise` sub-block)."""

    def __init__(
        self,
        body: nn.Module,
        hidden_size: int,
        dropout: float,
        eps: float,
        norm: str = "layernorm",
        *,
        positionwise: bool = False,
    ) -> None:
        super().__init__()
        self.norm = make_norm(norm, hidden_size, eps)
        self.body = body
        self.dropout = nn.Dropout(dropout)
        self.positionwise = positionwise
        self.takes_seq_idx = not positionwise and not isinstance(body, Positionwise)

    def forward(self, x: torch.Tensor, seq_idx: torch.Tensor | None = None) -> torch.Tensor:
        if seq_idx is None or not self.takes_seq_idx:
            return x + self.dropout(self.body(self.norm(x)))
        return x + self.dropout(self.body(self.norm(x), seq_idx=seq_idx))

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

    def __init__(
        self,
        spec: LayerSpec,
        options: Any,
        config: HybridConfig,
        *,
        registry: Registry | None = None,
    ) -> None:
        super().__init__()
        self.layer = spec.name
        self.capabilities = spec.capabilities
        self.stateful = spec.capabilities.step_mode
        self.packing = spec.capabilities.supports_packing
        bodies = build_bodies(spec, options, config.hidden_size, registry=registry)
        positionwise = spec.capabilities.positionwise
        H, p, eps, norm = config.hidden_size, config.dropout, config.norm_eps, config.norm
        self.sub_blocks = nn.ModuleList(
            ResidualBlock(b, H, p, eps, norm, positionwise=positionwise) for b in bodies
        )

    def forward(self, x: torch.Tensor, seq_idx: torch.Tensor | None = None) -> torch.Tensor:
        for block in self.sub_blocks:
            x = block(x, seq_idx)
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


class HybridModel(nn.Module, Checkpointed):
    """A hybrid sequence model; build one with :func:`hybridzoo.build`.

    ``forward(x [B, L, embed_dim])`` returns ``[B, hidden_size]`` (``output="last"``: the final
    norm at the last position) or ``[B, L, hidden_size]`` (``output="sequence"``). The input is
    a tensor of the model's dtype (a clear :class:`~hybridzoo.ShapeError` otherwise).
    """

    #: the ``kind`` of a saved model (see :mod:`hybridzoo.checkpoint`)
    checkpoint_kind = "HybridModel"
    config_class = HybridConfig

    def __init__(self, config: HybridConfig, *, registry: Registry | None = None) -> None:
        super().__init__()
        if not isinstance(config, HybridConfig):
            raise ConfigError(
                f"HybridModel takes a HybridConfig, got {type(config).__name__}; "
                "use hybridzoo.build(pattern, embed_dim=...) to build from a pattern"
            )
        registry = registry or get_registry()
        self.config = config
        specs = config.specs(registry)
        H = config.hidden_size

        def block(name: str, index: int | None) -> LayerBlock:
            options = config.options_of(name, index)
            return LayerBlock(specs[name], options, config, registry=registry)

        self.input_proj = nn.Linear(config.embed_dim, H) if config.embed_dim != H else None
        self.blocks = nn.ModuleList(block(name, i) for i, name in enumerate(config.pattern))
        self.shared = nn.ModuleDict({name: block(name, None) for name, _ in config.shared_layers})
        self.norm = make_norm(config.norm, H, config.norm_eps)
        self._order: list[LayerBlock] = [
            self.blocks[i] if i is not None else self.shared[name]  # type: ignore[misc]
            for name, i in config.schedule()
        ]
        self._stateless = sorted({b.layer for b in self._order if not b.stateful})
        self._no_packing = sorted({b.layer for b in self._order if not b.packing})
        self._fingerprint = state_fingerprint(config)
        # the module whose weights the input meets first (in a tuple: not a submodule again)
        entry = self.input_proj if self.input_proj is not None else self._order[0].sub_blocks[0]
        self._entry = (entry if self.input_proj is not None else entry.norm,)
        self._warned_step_dropout = False

    # -- helpers -------------------------------------------------------------------------------

    def _positions(
        self,
        start: torch.Tensor | int,
        length: int,
        like: torch.Tensor,
        seq_idx: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The standard (Vaswani) sinusoidal encoding for positions ``start .. start+length-1``:
        ``[L, H]`` for an integer ``start``, ``[B, L, H]`` for per-row starts ``[B]``; or for the
        offsets in their documents of ``seq_idx [B, L]`` (``[B, L, H]``)."""
        if seq_idx is not None:
            pos = document_positions(seq_idx)
        elif isinstance(start, torch.Tensor):
            pos = start.to(like.device)[:, None] + torch.arange(length, device=like.device)
        else:
            pos = torch.arange(start, start + length, device=like.device)
        return sinusoidal_encoding(pos, self.config.hidden_size, like.dtype)

    def _input_dtype(self) -> torch.dtype:
        """The dtype of the first weights the input meets (read from ``_parameters``: a plain
        dict lookup, not ``nn.Module.__getattr__``, on this per-step path)."""
        return self._entry[0]._parameters["weight"].dtype

    def _check_input(self, x: Any, ndim: int) -> None:
        """``x`` is a tensor ``[batch, seq_len, embed_dim]`` (``ndim=3``) or ``[batch,
        embed_dim]`` (``ndim=2``) of the model's dtype (unless autocast is on)."""
        E = self.config.embed_dim
        if (
            isinstance(x, torch.Tensor)
            and x.dim() == ndim
            and x.shape[-1] == E
            and x.dtype == self._input_dtype()
            and (ndim == 2 or x.shape[1] >= 1)
        ):
            return  # the common case, cheap: step latency matters
        shape = f"[batch, seq_len, {E}] (embed_dim)" if ndim == 3 else f"[batch, {E}]"
        if not isinstance(x, torch.Tensor):
            kind = f"{type(x).__module__}.{type(x).__qualname__}".removeprefix("builtins.")
            raise ShapeError(
                f"expected a torch.Tensor {shape}, got a {kind}: convert it first, e.g. "
                f"torch.as_tensor(x, dtype={self._input_dtype()})"
            )
        if x.dim() != ndim or x.shape[-1] != E:
            raise ShapeError(f"expected input {shape}, got shape {list(x.shape)}")
        if ndim == 3 and x.shape[1] < 1:
            raise ShapeError("the sequence length must be >= 1, got an empty sequence")
        dtype = self._input_dtype()
        if not torch.is_autocast_enabled(x.device.type):
            raise ShapeError(
                f"the input has dtype {x.dtype} but the model's parameters are {dtype}: convert "
                f"the input (x.to({dtype})) or the model (model.to({x.dtype}))"
            )

    def _embed(
        self, x: torch.Tensor, start: torch.Tensor | int, seq_idx: torch.Tensor | None = None
    ) -> torch.Tensor:
        h = self.input_proj(x) if self.input_proj is not None else x
        if self.config.positional_encoding == "sinusoidal":
            h = h + self._positions(start, x.shape[1], h, seq_idx)
        return h

    def _readout(self, h: torch.Tensor) -> torch.Tensor:
        if self.config.output == "last":
            return self.norm(h[:, -1])
        return self.norm(h)

    # -- the three modes -----------------------------------------------------------------------

    def forward(
        self,
        x: torch.Tensor,
        *,
        seq_idx: torch.Tensor | None = None,
        cu_seqlens: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """``[B, L, embed_dim]`` → ``[B, hidden]`` (``output="last"``) or ``[B, L, hidden]``.

        Packed documents: ``seq_idx [B, L]`` numbers the documents of each row, or
        ``cu_seqlens [N + 1]`` bounds those of one row; each document's outputs and gradients
        are then those of a forward of it alone (see :func:`hybridzoo.packing.packed_seq_idx`
        for what is refused, with a :class:`~hybridzoo.PackingError`).
        """
        self._check_input(x, 3)
        packed = packed_seq_idx(x, seq_idx, cu_seqlens, self._no_packing, self.config.output)
        h = self._embed(x, 0, packed)
        for block in self._order:
            h = block(h, packed)
        return self._readout(h)

    def _require_step_mode(self) -> None:
        if self._stateless:
            raise StateError(
                f"step mode needs layers with a step mode; {', '.join(map(repr, self._stateless))} "
                "declare neither capabilities.stateful nor capabilities.positionwise"
            )

    def _warn_step_dropout(self) -> None:
        if self.training and self.config.dropout > 0 and not self._warned_step_dropout:
            self._warned_step_dropout = True
            warnings.warn(
                f"step mode with dropout active (training mode, dropout={self.config.dropout}): "
                "its outputs are random and differ from forward() in eval mode. Step mode is "
                "for inference: call model.eval() first (this warning is shown once per model)",
                StepModeWarning,
                stacklevel=3,
            )

    def _check_state(self, state: Any, batch_size: int) -> HybridState:
        return check_state(state, self._fingerprint, len(self._order), batch_size)

    def init_state(self, batch_size: int) -> HybridState:
        """A fresh step-mode state for ``batch_size`` sequences (on the model's device/dtype)."""
        self._require_step_mode()
        try:
            batch_size = at_least(1).check("batch_size", batch_size)
        except (TypeError, ValueError) as exc:
            raise StateError(str(exc)) from None
        layers = [b.init_state(batch_size) for b in self._order]
        positions = torch.zeros(batch_size, dtype=torch.int64, device=self.norm.weight.device)
        return HybridState(layers, batch_size, positions, fingerprint=self._fingerprint)

    def step(self, x_t: torch.Tensor, state: HybridState) -> tuple[torch.Tensor, HybridState]:
        """One position: ``x_t [B, embed_dim]`` → ``(y_t [B, hidden], state)``.

        Stepping through a sequence gives ``forward`` with ``output="sequence"`` position by
        position. The state is updated in place and returned. Step mode is for inference (run
        it under ``torch.no_grad()`` in eval mode): autograd does not run through the in-place
        state updates, and with dropout active (training mode) a :class:`StepModeWarning` is
        shown once. A state made by a model of another structure is a :class:`StateError`.
        """
        self._check_input(x_t, 2)
        self._require_step_mode()
        self._check_state(state, x_t.shape[0])
        self._warn_step_dropout()
        h = self.input_proj(x_t) if self.input_proj is not None else x_t
        if self.config.positional_encoding == "sinusoidal":
            h = h + self._positions(state.positions, 1, h)[:, 0]
        layers = state.layers
        for i, block in enumerate(self._order):
            h, layers[i] = block.step(h, layers[i])
        state.positions += 1
        return self.norm(h), state

    def prefill(
        self, x: torch.Tensor, state: HybridState | None = None
    ) -> tuple[torch.Tensor, HybridState]:
        """Run a chunk ``[B, L, embed_dim]`` in parallel from ``state`` (fresh when ``None``);
        returns the output (as ``forward``) and a new state after the chunk, ready for ``step``
        (the given state is left unchanged). Inference-only, and checked, as :meth:`step`."""
        self._check_input(x, 3)
        self._require_step_mode()
        if state is not None:
            self._check_state(state, x.shape[0])
        self._warn_step_dropout()
        if state is None:  # one table for every row
            start = torch.zeros(x.shape[0], dtype=torch.int64, device=self.norm.weight.device)
            h = self._embed(x, 0)
        else:
            start = state.positions
            h = self._embed(x, start)
        new: list[Any] = []
        for i, block in enumerate(self._order):
            h, s = block.prefill(h, None if state is None else state.layers[i])
            new.append(s)
        out = HybridState(new, x.shape[0], start + x.shape[1], fingerprint=self._fingerprint)
        return self._readout(h), out

    # -- sizes and persistence -------------------------------------------------------------------

    def param_count(self) -> int:
        """Parameters of the model (shared weights once); equals :func:`hybridzoo.param_count`
        of its config."""
        return sum(p.numel() for p in self.parameters())

    def num_parameters(self) -> int:
        """Deprecated alias of :meth:`param_count`."""
        warnings.warn(
            "HybridModel.num_parameters() is deprecated: use HybridModel.param_count()",
            DeprecationWarning,
            stacklevel=2,
        )
        return self.param_count()

    def extra_repr(self) -> str:
        return f"pattern={' '.join(self.config.pattern)!r}, hidden_size={self.config.hidden_size}"

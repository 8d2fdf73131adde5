"""``HybridLM``: a causal language model around a :class:`~hybridzoo.HybridModel` backbone.

``input_ids [B, L]`` → token embedding ``[B, L, embed_dim]`` (plus the learned absolute
position of each token with ``max_positions``) → backbone (its blocks and final norm,
``output="sequence"``) ``[B, L, hidden]`` → head → ``logits [B, L, vocab_size]``. The head is
the embedding matrix when the embeddings are tied.

The three modes of the backbone carry over with token ids: :meth:`HybridLM.forward` (parallel),
:meth:`HybridLM.step` (one token per row) and :meth:`HybridLM.prefill` (a chunk, from and to a
:class:`~hybridzoo.HybridState`); they agree with each other. Step mode is for inference (see
:mod:`hybridzoo.model`). :meth:`HybridLM.generate` decodes.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from hybridzoo.checkpoint import Checkpointed
from hybridzoo.errors import ConfigError, ShapeError, StateError
from hybridzoo.lm.config import LMConfig
from hybridzoo.lm.generation import generate
from hybridzoo.model import HybridModel
from hybridzoo.packing import IGNORE_INDEX, document_positions, packed_seq_idx
from hybridzoo.registry import Registry
from hybridzoo.state import HybridState

__all__ = ["EMBEDDING_INIT_STD", "IGNORE_INDEX", "HybridLM", "lm_cross_entropy"]

#: Standard deviation of the token-embedding initialisation (GPT-2's).
EMBEDDING_INIT_STD = 0.02


def lm_cross_entropy(
    logits: torch.Tensor, targets: torch.Tensor, *, ignore_index: int = IGNORE_INDEX
) -> torch.Tensor:
    """Mean cross-entropy of ``logits [..., V]`` against ``targets [...]`` over the positions
    whose target is not ``ignore_index`` (computed in float32 at least); 0 (with a gradient
    path) when no position is scored."""
    flat = logits.reshape(-1, logits.shape[-1])
    flat = flat.to(torch.promote_types(flat.dtype, torch.float32))
    target = targets.reshape(-1)
    scored = target != ignore_index
    if not bool(scored.any()):
        return flat.sum() * 0.0
    return F.cross_entropy(flat[scored], target[scored])


def _vocab_error(vocab: int, ids: torch.Tensor) -> ShapeError:
    bad = ids[(ids < 0) | (ids >= vocab)]
    value = int(bad.flatten()[0]) if bad.numel() else "?"
    return ShapeError(
        f"token id {value} is out of range for a vocabulary of {vocab} (valid: 0..{vocab - 1})"
    )


class HybridLM(nn.Module, Checkpointed):
    """A language model: embedding, hybrid backbone, head. Build one with
    :func:`hybridzoo.build_lm`, load one with :func:`hybridzoo.load` or convert one with
    :func:`hybridzoo.from_transformers`.

    Attributes:
        config: the :class:`~hybridzoo.LMConfig`.
        embedding: ``nn.Embedding(vocab_size, embed_dim)``.
        backbone: the :class:`~hybridzoo.HybridModel` (``output="sequence"``).
        head: ``nn.Linear(hidden_size, vocab_size, bias=False)``, or ``None`` when tied.
        position: the learned absolute positions ``nn.Embedding(max_positions, embed_dim)``
            (initialised as the embedding), or ``None`` without ``config.max_positions``.
    """

    #: the ``kind`` of a saved model (see :mod:`hybridzoo.checkpoint`)
    checkpoint_kind = "HybridLM"
    config_class = LMConfig

    def __init__(
        self,
        config: LMConfig,
        *,
        registry: Registry | None = None,
        backbone: HybridModel | None = None,
    ) -> None:
        super().__init__()
        if not isinstance(config, LMConfig):
            raise ConfigError(
                f"HybridLM takes an LMConfig, got {type(config).__name__}; use "
                "hybridzoo.build_lm(pattern, vocab_size=...) to build from a pattern"
            )
        self.config = config
        self.embedding = nn.Embedding(config.vocab_size, config.embed_dim)
        nn.init.normal_(self.embedding.weight, std=EMBEDDING_INIT_STD)
        if backbone is None:
            backbone = HybridModel(config.backbone, registry=registry)
        elif backbone.config != config.backbone:
            raise ConfigError("the backbone given does not have the config's backbone config")
        self.backbone = backbone
        self.head = (
            None
            if config.tie_embeddings
            else nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        )
        self.position = None
        if config.max_positions is not None:
            self.position = nn.Embedding(config.max_positions, config.embed_dim)
            nn.init.normal_(self.position.weight, std=EMBEDDING_INIT_STD)
        self.register_load_state_dict_pre_hook(_rename_legacy_keys)

    @classmethod
    def from_backbone(
        cls,
        backbone: HybridModel,
        vocab_size: int,
        *,
        tie_embeddings: bool = True,
        max_positions: int | None = None,
    ) -> HybridLM:
        """A language model around an existing backbone (built with ``output="sequence"``),
        sharing its weights; the embedding (and an untied head, and the learned positions with
        ``max_positions``) are new."""
        if not isinstance(backbone, HybridModel):
            raise ConfigError(
                f"from_backbone takes a hybridzoo HybridModel, got {type(backbone).__name__}"
            )
        config = LMConfig(
            backbone=backbone.config,
            vocab_size=vocab_size,
            tie_embeddings=tie_embeddings,
            max_positions=max_positions,
        )
        return cls(config, backbone=backbone)

    # -- sizes -----------------------------------------------------------------------------------

    @property
    def vocab_size(self) -> int:
        return self.config.vocab_size

    @property
    def tied(self) -> bool:
        """The head is the embedding matrix."""
        return self.head is None

    def param_count(self) -> int:
        """Parameters of the model (a tied matrix once); equals
        :func:`hybridzoo.lm_param_count` of its config."""
        return sum(p.numel() for p in self.parameters())

    # -- the three modes -------------------------------------------------------------------------

    def _embed(self, input_ids: Any, ndim: int) -> torch.Tensor:
        if (
            not isinstance(input_ids, torch.Tensor)
            or input_ids.dim() != ndim
            or input_ids.dtype not in (torch.int64, torch.int32)
        ):
            shape = "[batch, seq_len]" if ndim == 2 else "[batch]"
            got = (
                f"a tensor of shape {list(input_ids.shape)} and dtype {input_ids.dtype}"
                if isinstance(input_ids, torch.Tensor)
                else f"a {type(input_ids).__name__}"
            )
            raise ShapeError(
                f"expected token ids as an int64 (or int32) tensor {shape}, got {got}"
                + ("; a list of prompts goes to generate()" if ndim == 2 else "")
            )
        if ndim == 2 and input_ids.shape[1] < 1:
            raise ShapeError("the sequence length must be >= 1, got an empty sequence")
        try:
            return self.embedding(input_ids)
        except IndexError:
            raise _vocab_error(self.vocab_size, input_ids) from None

    def _add_positions(
        self,
        x: torch.Tensor,
        input_ids: torch.Tensor,
        state: HybridState | None = None,
        seq_idx: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """``x`` (the embedded ``input_ids``, ``[B, L, E]`` or ``[B, E]``) plus the learned
        position of each token: from 0 (in each document of ``seq_idx``), or from each row's
        position in ``state``; a position past the table is an error naming the limit."""
        if self.position is None:
            return x
        limit = self.config.max_positions
        length = input_ids.shape[1] if input_ids.dim() == 2 else 1
        if seq_idx is not None:
            index = document_positions(seq_idx)  # [B, L]
        else:
            index = torch.arange(length, device=input_ids.device)  # [L]
        if state is not None:
            state = self.backbone._check_state(state, input_ids.shape[0])
            index = state.positions.to(input_ids.device)[:, None] + index  # [B, L]
        if (state is not None or length > limit) and index.numel():  # a sync, only then
            last = int(index.max())
            if last >= limit:
                error = StateError if state is not None else ShapeError
                raise error(
                    f"learned positions cover {limit} tokens (max_positions={limit}); position "
                    f"{last} was asked for: build the model with a larger max_positions, or "
                    "feed shorter sequences (packed documents restart at 0)"
                )
        positions = self.position(index)
        return x + (positions if input_ids.dim() == 2 else positions[:, 0])

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """The head: ``hidden [..., hidden_size]`` → ``logits [..., vocab_size]``."""
        if self.head is None:
            return F.linear(hidden, self.embedding.weight)
        return self.head(hidden)

    def forward(
        self,
        input_ids: torch.Tensor,
        *,
        seq_idx: torch.Tensor | None = None,
        cu_seqlens: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """``input_ids [B, L]`` (integers in ``[0, vocab_size)``) → ``logits [B, L, V]``.

        Packed documents (``seq_idx [B, L]`` or ``cu_seqlens``, as :meth:`HybridModel.forward`
        takes them): each document's logits are those of a forward of it alone (learned
        positions restart at 0 in each)."""
        x = self._embed(input_ids, 2)
        if self.position is not None:
            seq_idx, cu_seqlens = packed_seq_idx(input_ids, seq_idx, cu_seqlens), None
            x = self._add_positions(x, input_ids, seq_idx=seq_idx)
        hidden = self.backbone(x, seq_idx=seq_idx, cu_seqlens=cu_seqlens)
        return self.logits(hidden)

    def loss(
        self,
        input_ids: torch.Tensor,
        targets: torch.Tensor | None = None,
        *,
        ignore_index: int = IGNORE_INDEX,
        aux: bool = True,
        seq_idx: torch.Tensor | None = None,
        cu_seqlens: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The training loss of one forward: mean next-token cross-entropy, plus the layers'
        auxiliary losses (:func:`hybridzoo.aux_losses`, e.g. a mixture of experts' load
        balancing) when ``aux``. With packed documents (``seq_idx``/``cu_seqlens``, see
        :meth:`forward`) the default targets do not cross a document's end: its last token
        is not scored.

        Args:
            input_ids: ``[B, L]`` token ids.
            targets: ``[B, L]``, the token expected at each position's output, already shifted
                (``targets[:, t]`` is the id that should follow ``input_ids[:, :t+1]``), with
                ``ignore_index`` where nothing is scored. Default: ``input_ids`` shifted by one
                (the last position unscored). Note: transformers' ``labels`` are *not* shifted.
            ignore_index: the target value of an unscored position.
            aux: add the auxiliary losses recorded by this forward.
        """
        packed = packed_seq_idx(input_ids, seq_idx, cu_seqlens)
        logits = self(input_ids, seq_idx=packed)
        if targets is None:
            targets = F.pad(input_ids[:, 1:], (0, 1), value=ignore_index)
            if packed is not None:  # a document's last token predicts nothing
                ends = F.pad(packed[:, 1:] != packed[:, :-1], (0, 1), value=False)
                targets = targets.masked_fill(ends, ignore_index)
        elif not isinstance(targets, torch.Tensor) or targets.shape != input_ids.shape:
            shape = list(targets.shape) if isinstance(targets, torch.Tensor) else type(targets)
            raise ShapeError(
                f"targets must be a tensor of the shape of input_ids {list(input_ids.shape)}, "
                f"got {shape}"
            )
        loss = lm_cross_entropy(logits, targets, ignore_index=ignore_index)
        if aux:
            from hybridzoo.losses import aux_losses

            extra = aux_losses(self)
            if extra:
                loss = loss + sum(extra.values())
        return loss

    def init_state(self, batch_size: int) -> HybridState:
        """A fresh step-mode state for ``batch_size`` sequences (the backbone's)."""
        return self.backbone.init_state(batch_size)

    def step(self, input_ids: torch.Tensor, state: HybridState) -> tuple[torch.Tensor, HybridState]:
        """One token per row: ``input_ids [B]`` → ``(logits [B, V], state)``; the state is
        updated in place (see :meth:`HybridModel.step`). With learned positions each row's
        token is at its own position in ``state`` (a :class:`~hybridzoo.StateError` past
        ``max_positions``)."""
        x = self._add_positions(self._embed(input_ids, 1), input_ids, state)
        hidden, state = self.backbone.step(x, state)
        return self.logits(hidden), state

    def prefill(
        self, input_ids: torch.Tensor, state: HybridState | None = None, *, last_only: bool = False
    ) -> tuple[torch.Tensor, HybridState]:
        """A chunk ``input_ids [B, L]`` from ``state`` (fresh when ``None``): ``(logits [B, L, V]
        (``[B, V]`` of the last position with ``last_only``), new state)``; the given state is
        left unchanged (see :meth:`HybridModel.prefill`); learned positions continue from each
        row's position in ``state``."""
        x = self._add_positions(self._embed(input_ids, 2), input_ids, state)
        hidden, state = self.backbone.prefill(x, state)
        return self.logits(hidden[:, -1] if last_only else hidden), state

    generate = generate

    def extra_repr(self) -> str:
        tied = ", tied" if self.tied else ""
        positions = "" if self.position is None else f", max_positions={self.config.max_positions}"
        return f"vocab_size={self.vocab_size}{tied}{positions}"


def _rename_legacy_keys(
    module: nn.Module, state_dict: dict[str, Any], prefix: str, *_: Any
) -> None:
    """Weights of the arena's former ``LanguageModel`` (backbone under ``model.``) load too."""
    legacy = f"{prefix}model."
    for key in [k for k in state_dict if k.startswith(legacy)]:
        state_dict[f"{prefix}backbone.{key[len(legacy) :]}"] = state_dict.pop(key)

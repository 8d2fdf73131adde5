"""A causal language model around any :class:`hybridzoo.HybridModel` (built with
``output="sequence"``): token embedding (plus learned absolute positions, optionally) → hybrid
stack → vocabulary head.

The head shares the embedding matrix (weight tying) when ``tie=True`` and the model's
``embed_dim == hidden_size``; otherwise it is its own ``Linear(hidden_size, vocab_size)`` without
bias. With ``readout="last"`` (a compression task) every position's logits are decoded from the
*last* position's hidden state instead (MAD's decoder: the position's sinusoidal code added, two
LayerNorm-Linear-GELU layers, a LayerNorm and an unembedding with bias).
:func:`language_model_param_count` gives the exact count without building anything, from
``hybridzoo.param_count``.

The LM-level options (:data:`LM_OPTIONS`) are ``positions`` (``None`` or ``"learned"``: an
``nn.Embedding(max_len, embed_dim)`` added to the token embedding, as in Zoology's ICLR
baseline: the core's ``LMConfig.max_positions``), ``max_len`` (needed with learned positions
and the ``"last"`` readout) and ``readout``. :class:`LanguageModel` is the core's
:class:`~hybridzoo.HybridLM` with these; one with the causal readout saves and loads as a
``HybridLM`` (``hybridzoo.load``), the ``"last"`` readout is the arena's alone and refuses
``save`` (its weights stay in the arena's checkpoints, or ``lm.state_dict()``).
"""

from __future__ import annotations

import inspect
import math
import time
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

import hybridzoo
from hybridzoo.arena.tasks import IGNORE_INDEX, READOUTS, check
from hybridzoo.errors import CheckpointError, ConfigError, PackingError
from hybridzoo.lm.config import LMConfig
from hybridzoo.lm.model import HybridLM, lm_cross_entropy
from hybridzoo.validate import at_least, one_of

LM_OPTIONS = ("positions", "max_len", "readout")
"""Options of the language model itself (everything else goes to ``hybridzoo.build``)."""


def _config_value(model: nn.Module, name: str) -> Any:
    config = getattr(model, "config", None)
    if config is None or not hasattr(config, name):
        raise TypeError(
            f"LanguageModel needs a hybridzoo HybridModel (with model.config.{name}), "
            f"got {type(model).__name__}"
        )
    return getattr(config, name)


def _lm_fields(
    *,
    tie: bool,
    embed_dim: int,
    hidden_size: int,
    positions: str | None = None,
    max_len: int | None = None,
    readout: str = "causal",
) -> dict[str, Any]:
    """Check the LM options; the :class:`~hybridzoo.LMConfig` fields they give (the head is tied
    only when it can be, and not with the ``"last"`` readout, which has its own decoder)."""
    check(one_of(None, "learned"), "positions", positions)
    check(one_of(*READOUTS), "readout", readout)
    check(at_least(1, allow_none=True), "max_len", max_len)
    if max_len is None and (positions is not None or readout == "last"):
        raise ConfigError(f"positions={positions!r}, readout={readout!r} need max_len")
    return {
        "tie_embeddings": bool(tie) and embed_dim == hidden_size and readout == "causal",
        "max_positions": max_len if positions == "learned" else None,
    }


def _sinusoidal(length: int, width: int) -> torch.Tensor:
    """``[length, width]`` sine/cosine position codes (fixed, not learned)."""
    position = torch.arange(length, dtype=torch.float32)[:, None]
    freq = torch.exp(torch.arange(0, width, 2, dtype=torch.float32) * (-math.log(1e4) / width))
    codes = torch.zeros(length, width)
    codes[:, 0::2] = torch.sin(position * freq)
    codes[:, 1::2] = torch.cos(position * freq)[:, : width // 2]
    return codes


class LastPositionDecoder(nn.Module):
    """``hidden [B, L, H] → logits [B, L, V]`` from the last position only (compression)."""

    def __init__(self, hidden_size: int, vocab_size: int, max_len: int) -> None:
        super().__init__()
        H = hidden_size
        self.register_buffer("codes", _sinusoidal(max_len, H), persistent=False)
        self.layers = nn.Sequential(
            nn.LayerNorm(H), nn.Linear(H, H), nn.GELU(), nn.LayerNorm(H), nn.Linear(H, H), nn.GELU()
        )
        self.unembed = nn.Sequential(nn.LayerNorm(H), nn.Linear(H, vocab_size))

    @staticmethod
    def param_count(hidden_size: int, vocab_size: int) -> int:
        """Three LayerNorms, two ``H → H`` layers and the unembedding (all with biases)."""
        H = hidden_size
        return 3 * 2 * H + 2 * (H * H + H) + H * vocab_size + vocab_size

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        length = hidden.shape[1]
        x = hidden[:, -1:, :] + self.codes[:length].to(hidden.dtype)  # [B, L, H]
        return self.unembed(self.layers(x))


class LanguageModel(HybridLM):
    """``tokens [B, L] -> logits [B, L, vocab_size]`` around a sequence-output hybrid model: a
    :class:`~hybridzoo.HybridLM` (its embedding, learned positions, backbone and head, its
    loss, ``prefill``, ``generate`` and saving) with the arena's options and the ``"last"``
    readout. Without the readout it is a plain ``HybridLM`` (``positions="learned"`` is its
    ``max_positions=max_len``): build those with :func:`hybridzoo.build_lm` or
    :meth:`HybridLM.from_backbone`.

    Args:
        model: a ``HybridModel`` built with ``output="sequence"`` (``lm.backbone``; ``lm.model``
            is the same module, the name this class used before).
        vocab_size: number of token ids.
        tie: share the embedding matrix with the head when ``embed_dim == hidden_size``.
        positions: ``None``, or ``"learned"`` absolute positions (needs ``max_len``).
        max_len: the longest sequence (learned positions and the ``"last"`` readout).
        readout: ``"causal"`` (logits at each position) or ``"last"`` (see the module docs).
    """

    def __init__(
        self,
        model: nn.Module,
        vocab_size: int,
        *,
        tie: bool = True,
        positions: str | None = None,
        max_len: int | None = None,
        readout: str = "causal",
    ) -> None:
        check(at_least(1), "vocab_size", vocab_size)
        output = _config_value(model, "output")
        if output != "sequence":
            raise ConfigError(
                f"LanguageModel needs a model built with output='sequence', got output={output!r}"
            )
        embed_dim = int(_config_value(model, "embed_dim"))
        hidden_size = int(_config_value(model, "hidden_size"))
        lm_options = {"positions": positions, "max_len": max_len, "readout": readout}
        fields = _lm_fields(tie=tie, embed_dim=embed_dim, hidden_size=hidden_size, **lm_options)
        config = LMConfig(backbone=model.config, vocab_size=vocab_size, **fields)
        super().__init__(config, backbone=model)
        self.max_len, self.readout = max_len, readout
        if readout == "last":
            self.head = LastPositionDecoder(hidden_size, vocab_size, max_len)

    @property
    def model(self) -> nn.Module:
        """The backbone (``lm.backbone``)."""
        return self.backbone

    def forward(self, tokens: torch.Tensor, *, seq_idx: torch.Tensor | None = None) -> torch.Tensor:
        """``tokens [B, L]`` int64 → ``logits [B, L, vocab_size]``; ``seq_idx [B, L]``: packed
        documents, each as if alone (learned positions restart too; not with the ``"last"``
        readout, which reads one position per row)."""
        if seq_idx is not None and self.readout != "causal":
            raise PackingError(
                f"readout={self.readout!r} decodes every target from the row's last position: "
                "it cannot read packed documents (train without packing)"
            )
        return super().forward(tokens, seq_idx=seq_idx)

    def _causal_only(self, what: str) -> None:
        if self.readout != "causal":
            raise ConfigError(f"{what} decodes next-token logits: readout='causal' only")

    def step_hidden(self, tokens: torch.Tensor, state: Any) -> tuple[torch.Tensor, Any]:
        """One decoding step of the backbone: ``tokens [B]`` → ``(hidden [B, H], state)``."""
        return self.backbone.step(self._add_positions(self._embed(tokens, 1), tokens, state), state)

    def step(self, tokens: torch.Tensor, state: Any) -> tuple[torch.Tensor, Any]:
        """One decoding step: ``tokens [B]`` → ``(logits [B, vocab_size], new state)``."""
        self._causal_only("step()")
        return super().step(tokens, state)

    def prefill(
        self, tokens: torch.Tensor, state: Any = None, *, last_only: bool = False
    ) -> tuple[torch.Tensor, Any]:
        """As :meth:`HybridLM.prefill` (the learned positions of the chunk included)."""
        self._causal_only("prefill()")
        return super().prefill(tokens, state, last_only=last_only)

    def check_saveable(self) -> None:
        """The ``"last"`` readout is the arena's alone: ``hybridzoo.load`` could not rebuild
        its decoder, so saving one is a :class:`~hybridzoo.CheckpointError` (before anything
        is written)."""
        if self.readout != "causal":
            raise CheckpointError(
                f"a LanguageModel with readout={self.readout!r} cannot be saved as a hybridzoo "
                "model: its LastPositionDecoder is the arena's alone and hybridzoo.load could not "
                "rebuild it. Keep its weights in the arena's checkpoints, or with "
                "torch.save(lm.state_dict(), path), and load them into "
                f"build_language_model(..., readout={self.readout!r}, max_len={self.max_len})"
            )


def _lm_split(options: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    lm = {k: options.pop(k) for k in LM_OPTIONS if k in options}
    return lm, options


def build_language_model(
    pattern: str | Sequence[str],
    *,
    vocab_size: int,
    hidden_size: int,
    embed_dim: int | None = None,
    tie: bool = True,
    **options: Any,
) -> LanguageModel:
    """Build ``hybridzoo.build(pattern, output="sequence", ...)`` and wrap it in a LanguageModel.

    ``embed_dim`` defaults to ``hidden_size`` (no input projection, tied head). ``options`` are
    the LM options (:data:`LM_OPTIONS`) and what ``hybridzoo.build`` takes (``dropout``,
    ``shared_layers``, layer options, ...).
    """
    lm_options, options = _lm_split(dict(options))
    embed = hidden_size if embed_dim is None else embed_dim
    model = hybridzoo.build(
        pattern, embed_dim=embed, hidden_size=hidden_size, output="sequence", **options
    )
    return LanguageModel(model, vocab_size, tie=tie, **lm_options)


def language_model_param_count(pattern: str | Sequence[str], **arguments: Any) -> int:
    """Exact parameter count of :func:`build_language_model` with the same arguments (no build):
    :meth:`LMConfig.param_count` of what the core builds, the ``"last"`` readout's decoder in
    place of its (untied) head."""
    bound = inspect.signature(build_language_model).bind(pattern, **arguments)
    bound.apply_defaults()
    given = bound.arguments
    vocab_size, hidden_size = given["vocab_size"], given["hidden_size"]
    embed = hidden_size if given["embed_dim"] is None else given["embed_dim"]
    lm_options, options = _lm_split(dict(given["options"]))
    fields = _lm_fields(tie=given["tie"], embed_dim=embed, hidden_size=hidden_size, **lm_options)
    sizes = {"vocab_size": vocab_size, "embed_dim": embed, "hidden_size": hidden_size}
    config = LMConfig.create(pattern, **sizes, **fields, **options)
    count = config.param_count()
    if lm_options.get("readout", "causal") == "last":
        count += LastPositionDecoder.param_count(hidden_size, vocab_size)
        count -= config.embedding_param_counts()["head"]  # the head the decoder replaces
    return count


def masked_loss_and_accuracy(
    logits: torch.Tensor, targets: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Cross-entropy mean and correct-prediction count over scored positions.

    ``logits [B, L, V]``, ``targets [B, L]`` (``-100`` = not scored). Returns
    ``(mean loss, number correct, number scored)``; the loss is 0 when nothing is scored.
    """
    loss = lm_cross_entropy(logits, targets, ignore_index=IGNORE_INDEX)
    flat_targets = targets.reshape(-1)  # [B·L]
    scored = flat_targets != IGNORE_INDEX
    predicted = logits.reshape(-1, logits.shape[-1])[scored].argmax(dim=-1)
    return loss, (predicted == flat_targets[scored]).sum(), scored.sum()


@torch.no_grad()
def step_latency(
    lm: LanguageModel, *, num_tokens: int = 32, warmup: int = 4, batch_size: int = 1
) -> float:
    """Median seconds per token of one step-mode decoding step (backbone and, with the causal
    readout, the head) for one sequence."""
    was_training = lm.training
    lm.eval()
    device = lm.embedding.weight.device
    state = lm.init_state(batch_size)
    token = torch.zeros(batch_size, dtype=torch.int64, device=device)
    times = []
    steps = warmup + num_tokens
    if lm.max_len is not None:
        steps = min(steps, lm.max_len)
    for i in range(steps):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        hidden, state = lm.step_hidden(token, state)
        if lm.readout == "causal":
            token = lm.logits(hidden).argmax(dim=-1)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        if i >= min(warmup, steps // 2):
            times.append(time.perf_counter() - start)
    lm.train(was_training)
    times.sort()
    return times[len(times) // 2]


language_model_param_count.__signature__ = inspect.signature(build_language_model).replace(  # type: ignore[attr-defined]
    return_annotation="int"
)

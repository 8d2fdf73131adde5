"""Auxiliary losses: what a body adds to the training loss besides the task's (a mixture of
experts' load-balancing loss and router z-loss).

A body with auxiliary losses implements ``aux_losses() -> dict[str, Tensor]``: the losses of its
forward calls since they were last read, each already scaled by its coefficient (0-dim tensors
with their autograd graph). :func:`aux_losses` collects them from a whole model. Training code
adds them to the task loss after each forward::

    logits = model(x)
    aux = hybridzoo.aux_losses(model)           # {"2.moe.load_balancing": ..., ...}
    loss = task_loss(logits, y) + sum(aux.values())
    loss.backward()

(``sum`` of an empty dict is 0, so the same loop serves models without such layers.) Log the
items of ``aux`` to watch the experts' balance. A body applied several times in one forward (a
shared layer) reports the sum over its applications.

Bodies record through :class:`AuxLossRecorder`, which keeps this bookkeeping in one place.
"""

from __future__ import annotations

import re
import warnings
from typing import TYPE_CHECKING

from hybridzoo.errors import PluginError

if TYPE_CHECKING:  # pragma: no cover
    from torch import Tensor, nn

__all__ = ["AuxLossRecorder", "aux_losses"]

#: Paths of the bodies inside a :class:`hybridzoo.HybridModel`.
_BLOCK_BODY = re.compile(r"^(?P<prefix>.*?)blocks\.(?P<index>\d+)\.sub_blocks\.(?P<sub>\d+)\.body$")
_SHARED_BODY = re.compile(r"^(?P<prefix>.*?)shared\.(?P<name>\w+)\.sub_blocks\.(?P<sub>\d+)\.body$")


class AuxLossRecorder:
    """The auxiliary losses of one body's current forward.

    - :meth:`record` (from the body's forward) adds one call's losses. Calls add up until the
      losses are read, or a backward pass goes through the body's output (``output=`` of
      :meth:`record`), or a call runs without gradients: the next call then starts afresh. So a
      shared body applied at several positions of one forward reports them all, and each
      training step reports its own forward, whether or not the previous one was read. Without
      gradients (eval, ``torch.no_grad()``) only the last call is kept.
    - :meth:`read` returns the sums (the same again until the next call).

    Losses recorded with gradients and never read nor back-propagated keep their autograd graphs
    alive: after ``max_unread`` such calls the recorder warns once and drops the older ones.
    """

    def __init__(self, owner: str = "body", *, max_unread: int = 64) -> None:
        self.owner = owner
        self.max_unread = max_unread
        self._calls: list[dict[str, Tensor]] = []
        self._done = False  # read, or back-propagated through: the next call starts afresh
        self._warned = False

    def _backward_seen(self, grad: Tensor) -> None:
        self._done = True

    def record(self, losses: dict[str, Tensor], output: Tensor | None = None) -> None:
        """Add one forward call's losses (already scaled by their coefficients); ``output`` is
        the call's output, watched for the backward pass that ends the step."""
        import torch

        if self._done or not torch.is_grad_enabled():
            self._calls.clear()
            self._done = False
        self._calls.append(dict(losses))
        if output is not None and output.requires_grad:
            output.register_hook(self._backward_seen)
        if len(self._calls) > self.max_unread:
            if not self._warned:
                warnings.warn(
                    f"{self.owner}: the auxiliary losses of {len(self._calls)} forward calls "
                    "with gradients were neither read nor back-propagated through: add "
                    "hybridzoo.aux_losses(model) to the training loss after each forward (or "
                    "set their coefficients to 0); the older ones are dropped",
                    RuntimeWarning,
                    stacklevel=3,
                )
                self._warned = True
            del self._calls[0]

    def read(self) -> dict[str, Tensor]:
        """The losses of the calls since the last read, summed per name."""
        self._done = True
        total: dict[str, Tensor] = {}
        for call in self._calls:
            for name, value in call.items():
                total[name] = value if name not in total else total[name] + value
        return total

    def clear(self) -> None:
        """Forget every recorded call."""
        self._calls.clear()
        self._done = False


def _label(model: nn.Module, path: str) -> str:
    """``"3.moe"`` for the body of the third pattern position, ``"shared.moe"`` for a shared
    block; a sub-block index is added when the block has several (``"3.attention.2"``)."""
    for pattern in (_BLOCK_BODY, _SHARED_BODY):
        match = pattern.match(path)
        if match is None:
            continue
        block_path = path[: -len(f".sub_blocks.{match['sub']}.body")]
        block = model.get_submodule(block_path)
        layer = getattr(block, "layer", None)
        subs = getattr(block, "sub_blocks", ())
        if layer is None:
            break
        where = (
            f"shared.{match['name']}"
            if pattern is _SHARED_BODY
            else f"{int(match['index']) + 1}.{layer}"
        )
        if len(subs) > 1:
            where += f".{int(match['sub']) + 1}"
        return match["prefix"] + where
    return path


def aux_losses(model: nn.Module) -> dict[str, Tensor]:
    """The auxiliary losses that the bodies of ``model`` recorded since they were last read.

    Args:
        model: a :class:`hybridzoo.HybridModel`, a single body, or any module containing them.

    Returns:
        ``{"<where>.<loss>": tensor}``, each already scaled by its coefficient: ``<where>`` is
        the 1-based pattern position and the layer (``"2.moe"``), ``"shared.<layer>"`` for a
        shared block, or the module's path in other modules (empty for ``model`` itself). Empty
        when no body has auxiliary losses (or their coefficients are 0).

    Raises:
        PluginError: a body's ``aux_losses()`` does not return a mapping of names to tensors.
    """
    import torch

    found: dict[str, Tensor] = {}
    for path, module in model.named_modules():
        method = getattr(module, "aux_losses", None)
        if not callable(method):
            continue
        losses = method()
        if not isinstance(losses, dict) or not all(
            isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in losses.items()
        ):
            raise PluginError(
                f"{type(module).__name__}.aux_losses() at {path or 'the model'!r} must return a "
                f"dict of names to tensors, got {losses!r:.120}"
            )
        where = _label(model, path)
        for name, value in losses.items():
            found[f"{where}.{name}" if where else name] = value
    return found

"""``HybridState``: the step-mode state of a model, and the fingerprint that ties it to one.

A state holds one entry per block application (the bodies' own states, tuples of batch-first
tensors) and the number of positions consumed. It also carries the *fingerprint* of the model
structure that made it: the hidden size and, per block application, the layer and its options
record. ``step``/``prefill`` refuse a state whose fingerprint differs from the model's with a
:class:`~hybridzoo.StateError` that names the difference (the state of a window-8 attention
layer given to a window-4 model would otherwise be used silently). Two models of one structure
share states.
"""

from __future__ import annotations

from typing import Any

import attrs

from hybridzoo.errors import StateError

__all__ = [
    "Fingerprint",
    "HybridState",
    "check_state",
    "fingerprint_mismatch",
    "state_fingerprint",
]

#: ``(hidden_size, ((layer name, options record), ...))`` in the order the blocks run.
Fingerprint = tuple[int, tuple[tuple[str, Any], ...]]


def state_fingerprint(config: Any) -> Fingerprint:
    """The structure of ``config`` (a :class:`~hybridzoo.HybridConfig`) that a state depends on."""
    blocks = tuple((name, config.options_of(name, i)) for name, i in config.schedule())
    return (config.hidden_size, blocks)


def _record_difference(ours: Any, theirs: Any) -> str:
    if not (attrs.has(type(ours)) and type(ours) is type(theirs)):
        return f"options {theirs!r} in the model that made the state, {ours!r} in this one"
    mine, other = attrs.asdict(ours, recurse=False), attrs.asdict(theirs, recurse=False)
    fields = [k for k in mine if mine[k] != other[k]]
    return "; ".join(
        f"{k} is {other[k]!r} in the model that made the state and {mine[k]!r} in this one"
        for k in fields
    )


def fingerprint_mismatch(theirs: Fingerprint, ours: Fingerprint) -> str | None:
    """What differs between a state's fingerprint and a model's (``None`` when they agree)."""
    if theirs == ours:
        return None
    if theirs[0] != ours[0]:
        return f"it was made for hidden_size {theirs[0]}, this model has hidden_size {ours[0]}"
    if len(theirs[1]) != len(ours[1]):
        return (
            f"it holds {len(theirs[1])} block states ({' '.join(n for n, _ in theirs[1])}), "
            f"this model runs {len(ours[1])} blocks ({' '.join(n for n, _ in ours[1])})"
        )
    pairs = zip(theirs[1], ours[1], strict=True)
    for i, ((name, record), (our_name, our_record)) in enumerate(pairs):
        if name != our_name:
            return f"block {i + 1} is {name!r} in the state's model and {our_name!r} in this one"
        if record != our_record:
            return f"block {i + 1} ({name}): {_record_difference(our_record, record)}"
    return "the model structures differ"  # pragma: no cover - equal parts, unequal whole


class HybridState:
    """Step-mode state of a :class:`~hybridzoo.HybridModel`, from ``init_state`` or ``prefill``.

    Attributes:
        layers: one entry per block application (a list over the block's sub-blocks of the
            bodies' states).
        batch_size: the number of sequences.
        position: positions consumed so far (used by the sinusoidal encoding).
        fingerprint: the structure of the model that made it (see :mod:`hybridzoo.state`);
            ``None`` for a state assembled by hand (then it is not checked).
    """

    __slots__ = ("batch_size", "fingerprint", "layers", "position")

    def __init__(
        self,
        layers: list[Any],
        batch_size: int,
        position: int = 0,
        *,
        fingerprint: Fingerprint | None = None,
    ) -> None:
        self.layers = layers
        self.batch_size = batch_size
        self.position = position
        self.fingerprint = fingerprint

    def __repr__(self) -> str:
        return (
            f"HybridState(batch_size={self.batch_size}, position={self.position}, "
            f"{len(self.layers)} blocks)"
        )


def check_state(
    state: Any, fingerprint: Fingerprint, num_blocks: int, batch_size: int
) -> HybridState:
    """``state`` if it is a :class:`HybridState` of a model with this ``fingerprint`` (running
    ``num_blocks`` blocks) for ``batch_size`` sequences; a :class:`StateError` saying what
    differs otherwise."""
    if not isinstance(state, HybridState):
        raise StateError(
            f"expected a HybridState from init_state() or prefill(), got "
            f"{type(state).__name__}: {state!r:.60}"
        )
    if state.fingerprint is not fingerprint:  # the same model: nothing to compare
        if state.fingerprint is not None:
            problem = fingerprint_mismatch(state.fingerprint, fingerprint)
        elif len(state.layers) != num_blocks:
            problem = f"it holds {len(state.layers)} block states, the model runs {num_blocks}"
        else:
            problem = None  # assembled by hand, of the right length: not checked further
        if problem is not None:
            raise StateError(f"this state was made by a different model: {problem}")
    if batch_size != state.batch_size:
        raise StateError(
            f"the input has batch size {batch_size} but the state was made for {state.batch_size}"
        )
    return state

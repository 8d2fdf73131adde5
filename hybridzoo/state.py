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

from collections.abc import Sequence
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
    """Step-mode state of a :class:`~hybridzoo.HybridModel` or :class:`~hybridzoo.HybridLM`,
    from ``init_state`` or ``prefill``.

    Rows are independent sequences, each at its own position: states of several prompts
    prefilled on their own can be concatenated (:meth:`cat`) and stepped as one batch, rows
    reordered or repeated (:meth:`select`, as beam search does), and a state saved and restored
    (:meth:`snapshot`, :meth:`restore`: speculative decoding). These operations work on the
    bodies' states generically (tuples of batch-first tensors; see
    :mod:`hybridzoo.state_tree`) and each returns a new, independent state unless it says
    otherwise.

    Attributes:
        layers: one entry per block application (a list over the block's sub-blocks of the
            bodies' states).
        batch_size: the number of sequences.
        positions: ``[batch_size]`` int64 tensor: the positions each row has consumed (used by
            the sinusoidal encoding), or ``None`` for a state assembled by hand at position 0.
        fingerprint: the structure of the model that made it (see :mod:`hybridzoo.state`);
            ``None`` for a state assembled by hand (then it is not checked).
    """

    __slots__ = ("batch_size", "fingerprint", "layers", "positions")

    def __init__(
        self,
        layers: list[Any],
        batch_size: int,
        position: Any = 0,
        *,
        fingerprint: Fingerprint | None = None,
    ) -> None:
        self.layers = layers
        self.batch_size = batch_size
        if isinstance(position, int) and not isinstance(position, bool):
            import torch

            position = torch.full((batch_size,), position, dtype=torch.int64)
        self.positions = position
        self.fingerprint = fingerprint

    @property
    def position(self) -> int:
        """The position of every row, when all rows are at one (a :class:`StateError` saying
        to read :attr:`positions` otherwise)."""
        low, high = int(self.positions.min()), int(self.positions.max())
        if low != high:
            raise StateError(
                f"the rows are at different positions ({low} to {high}): read state.positions "
                "(one per row)"
            )
        return low

    def __repr__(self) -> str:
        low, high = int(self.positions.min()), int(self.positions.max())
        where = f"position={low}" if low == high else f"positions={low}..{high}"
        return f"HybridState(batch_size={self.batch_size}, {where}, {len(self.layers)} blocks)"

    # -- operations --------------------------------------------------------------------------

    def _blockwise(self, what: str, fn: Any) -> list[Any]:
        """``fn(block_state)`` for every block, errors naming the block and its layer."""
        out = []
        for i, block in enumerate(self.layers):
            try:
                out.append(fn(i, block))
            except StateError as exc:
                raise StateError(f"{what}: {_block_name(self, i)}: {exc}") from None
        return out

    def _with(self, layers: list[Any], batch_size: int, positions: Any) -> HybridState:
        return HybridState(layers, batch_size, positions, fingerprint=self.fingerprint)

    def clone(self) -> HybridState:
        """A deep copy, independent of this state (no tensor shared)."""
        from hybridzoo.state_tree import clone_tree

        layers = self._blockwise("clone", lambda i, b: clone_tree(b))
        return self._with(layers, self.batch_size, self.positions.clone())

    def select(self, rows: Any) -> HybridState:
        """A new state of the rows ``rows``, in that order: a sequence of row indices (repeats
        and negative indices allowed), a 1-D integer tensor, or a boolean mask ``[batch_size]``.
        ``state.select([2, 0])`` reorders, ``state.select([0, 0, 1, 1])`` repeats (beam
        search), ``state.select(~finished)`` drops rows."""
        from hybridzoo.state_tree import select_tree

        index = _row_index(rows, self.batch_size)
        B = self.batch_size
        layers = self._blockwise("select", lambda i, b: select_tree(b, index, B))
        positions = self.positions.index_select(0, index.to(self.positions.device))
        return self._with(layers, len(index), positions)

    @staticmethod
    def cat(states: Sequence[HybridState]) -> HybridState:
        """One state of the rows of ``states``, in order; the states must come from models of
        one structure (a :class:`StateError` naming the difference otherwise) and may be at
        different positions (each row keeps its own). Caches of different capacities are
        zero-padded to the largest (see :mod:`hybridzoo.state_tree`)."""
        from hybridzoo.state_tree import cat_trees

        states = list(states) if not isinstance(states, HybridState) else [states]
        if not states or not all(isinstance(s, HybridState) for s in states):
            kinds = sorted({type(s).__name__ for s in states}) or ["nothing"]
            raise StateError(f"HybridState.cat takes a list of HybridStates, got {kinds}")
        first = states[0]
        for n, other in enumerate(states[1:], start=2):
            problem = _structure_mismatch(other, first)
            if problem is not None:
                raise StateError(f"HybridState.cat: state {n} differs from state 1: {problem}")
        batches = [s.batch_size for s in states]
        layers = first._blockwise(
            "cat", lambda i, b: cat_trees([s.layers[i] for s in states], batches)
        )
        import torch

        device = first.positions.device
        positions = torch.cat([s.positions.to(device) for s in states])
        return first._with(layers, sum(batches), positions)

    def to(self, device: Any = None, dtype: Any = None) -> HybridState:
        """The state on ``device`` with floating-point tensors in ``dtype`` (counters stay
        int64), for a model moved the same way. As ``Tensor.to``, tensors already there are not
        copied: :meth:`clone` the result for an independent state."""
        from hybridzoo.state_tree import to_tree

        layers = self._blockwise("to", lambda i, b: to_tree(b, device, dtype))
        positions = self.positions.to(device=device)
        return self._with(layers, self.batch_size, positions)

    def snapshot(self) -> HybridState:
        """A copy to :meth:`restore` later (the same as :meth:`clone`)."""
        return self.clone()

    def restore(self, snapshot: HybridState) -> HybridState:
        """Set this state, in place, back to ``snapshot`` (from :meth:`snapshot` or
        :meth:`clone` of this state or one of its structure and batch size), which stays as it
        is and can be restored again. Stepping on from a restored state gives exactly what
        stepping on from the snapshot's moment gave: discard speculated tokens with it. Returns
        this state."""
        from hybridzoo.state_tree import restore_tree

        if not isinstance(snapshot, HybridState):
            raise StateError(f"restore takes a HybridState, got {type(snapshot).__name__}")
        problem = _structure_mismatch(snapshot, self)
        if problem is None and snapshot.batch_size != self.batch_size:
            problem = f"it has {snapshot.batch_size} rows, this state {self.batch_size}"
        if problem is not None:
            raise StateError(f"cannot restore this snapshot: {problem}")
        self.layers = self._blockwise("restore", lambda i, b: restore_tree(b, snapshot.layers[i]))
        self.positions = restore_tree(self.positions, snapshot.positions)
        return self


def _block_name(state: HybridState, index: int) -> str:
    if state.fingerprint is not None:
        return f"block {index + 1} ({state.fingerprint[1][index][0]})"
    return f"block {index + 1}"


def _structure_mismatch(state: HybridState, reference: HybridState) -> str | None:
    if state.fingerprint is not None and reference.fingerprint is not None:
        return fingerprint_mismatch(state.fingerprint, reference.fingerprint)
    if len(state.layers) != len(reference.layers):
        return f"it holds {len(state.layers)} block states, the other {len(reference.layers)}"
    return None


def _row_index(rows: Any, batch_size: int) -> Any:
    """``rows`` as a 1-D int64 tensor of indices in ``[0, batch_size)``."""
    import torch

    if isinstance(rows, torch.Tensor) and rows.dtype == torch.bool:
        if rows.shape != (batch_size,):
            raise StateError(
                f"a boolean row mask must have shape [{batch_size}], got {list(rows.shape)}"
            )
        index = rows.nonzero().flatten()
    else:
        try:
            index = torch.as_tensor(rows).flatten() if not isinstance(rows, int) else None
        except (TypeError, ValueError, RuntimeError):
            index = None
        if index is not None and index.numel() == 0:
            raise StateError("select needs at least one row")
        if index is None or index.dtype.is_floating_point or index.dtype == torch.bool:
            raise StateError(
                "rows must be a sequence of row indices, a 1-D integer tensor or a boolean mask, "
                f"got {rows!r:.60}"
            )
        index = index.to(torch.int64)
        bad = index[(index < -batch_size) | (index >= batch_size)]
        if bad.numel():
            raise StateError(
                f"row {int(bad[0])} is out of range for a state of {batch_size} rows "
                f"(valid: 0..{batch_size - 1}, or negative from the end)"
            )
        index = index.remainder(batch_size)
    if index.numel() == 0:
        raise StateError("select needs at least one row")
    return index.cpu()


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

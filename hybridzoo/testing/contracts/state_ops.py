"""Contract ``state_ops``: the step state is a value the core can operate on. Restoring a
snapshot rolls a body back exactly (speculative decoding); rows of states prefilled apart can be
concatenated, reordered and repeated and each row goes on as alone (generation with prompts of
different lengths, beam search); a state made by a model of another structure is refused.

The operations are the core's own (:mod:`hybridzoo.state_tree`, :class:`hybridzoo.HybridState`),
applied to the body's state as it returns it: a body passes when its state holds everything a
step depends on (nothing kept on the module), batch-first with independent rows."""

from __future__ import annotations

from typing import Any

import attrs
import torch

from hybridzoo.errors import HybridZooError, StateError
from hybridzoo.options import make_options
from hybridzoo.registry import use_registry
from hybridzoo.state_tree import cat_trees, clone_tree, restore_tree, select_tree
from hybridzoo.testing.case import (
    LayerCase,
    build_model,
    case_model,
    hidden_multiple,
    model_config,
    private_registry,
)
from hybridzoo.testing.catalog import register
from hybridzoo.testing.compare import assert_close, same_values, snapshot
from hybridzoo.testing.protocol import (
    forward,
    named,
    require_stateful,
    run_steps,
    step_bodies,
    step_pair,
)
from hybridzoo.testing.results import CheckFailure, CheckSkipped

# pytest hides the kit's own frames from tracebacks: the author sees the failure first
__tracebackhide__ = True

#: Tokens stepped along each path after a snapshot or a concatenation.
_AHEAD = 3


@register("snapshot_rollback", "state_ops")
def check_snapshot_rollback(case: LayerCase) -> None:
    """For each body: prefill a prefix, snapshot the state (a deep copy), step three tokens of
    one path, restore the snapshot into the state and step three tokens of another path: the
    outputs equal ``forward`` over the prefix and the second path (the speculative-decoding
    rollback), a second restore gives them again, and the snapshot itself never changes. The
    same through :meth:`HybridState.snapshot`/:meth:`~HybridState.restore` on a model of two
    blocks."""
    require_stateful(case)
    prefix = max(case.length // 2, 1)
    x = case.inputs(length=prefix + _AHEAD)  # the path kept
    other = case.inputs(length=_AHEAD, offset=11)  # the path rolled back
    with torch.no_grad():
        for name, body in named(step_bodies(case)):
            y = forward(body, x, name)
            _, state = step_pair(body.prefill(x[:, :prefix]), f"{name}: prefill")
            saved = clone_tree(state)
            frozen = snapshot(saved, f"{name}: snapshot")
            for attempt in ("after a rollback", "after a second rollback"):
                state = run_steps(body, other, state, name).state
                state = restore_tree(state, saved)
                kept = run_steps(body, x[:, prefix:], state, name)
                assert_close(
                    kept.outputs,
                    y[:, prefix:],
                    what=f"{name}: steps {attempt} to the state after {prefix} positions != "
                    f"forward (positions {prefix}.. shown as t=0..): the state does not hold "
                    "everything a step depends on",
                )
                state = kept.state
                if not same_values(saved, frozen, f"{name}: snapshot"):
                    raise CheckFailure(
                        f"{name}: the snapshot changed while the state was stepped {attempt}: "
                        "the state returned by step or prefill shares tensors with it"
                    )
    _model_rollback(case, prefix)


def _model_rollback(case: LayerCase, prefix: int) -> None:
    model = case_model(case)
    x = case.randn(case.batch, prefix + _AHEAD, case.hidden_size + 1, offset=2)
    other = case.randn(case.batch, _AHEAD, case.hidden_size + 1, offset=3)
    with torch.no_grad():
        y = model(x)
        _, state = model.prefill(x[:, :prefix])
        saved = state.snapshot()
        for t in range(_AHEAD):
            model.step(other[:, t], state)
        state.restore(saved)
        outs = [model.step(x[:, t], state)[0] for t in range(prefix, prefix + _AHEAD)]
    assert_close(
        torch.stack(outs, 1),
        y[:, prefix:],
        what=f"a model of two {case.name!r} blocks: steps after HybridState.restore != forward",
    )


def _require_batched(case: LayerCase) -> None:
    require_stateful(case)
    if not case.spec.capabilities.batched_state:
        raise CheckSkipped(
            f"layer {case.name!r} declares capabilities.batched_state=False (its state's rows "
            "cannot be selected or concatenated)"
        )


def _rows(body: Any, x: torch.Tensor, state: Any, name: str) -> torch.Tensor:
    return run_steps(body, x, state, name).outputs


@register("rows_select_cat", "state_ops")
def check_rows_select_cat(case: LayerCase) -> None:
    """For each body: two sequences prefilled apart, to different lengths, then concatenated
    (rows kept at their own positions, a cache of another capacity zero-padded) step on
    together as each alone (its ``forward``); rows reordered and repeated with a row selection
    (beam search) step on as their sources; a clone stepped leaves the original unchanged
    (float64 tolerances)."""
    _require_batched(case)
    short, long = max(case.length // 2, 1), max(case.length, 2)
    xs = [case.inputs(batch=1, length=n + _AHEAD, offset=20 + n) for n in (short, long)]
    with torch.no_grad():
        for name, body in named(step_bodies(case)):
            ys = [forward(body, x, name) for x in xs]
            states = [
                step_pair(body.prefill(x[:, :n]), f"{name}: prefill")[1]
                for x, n in zip(xs, (short, long), strict=True)
            ]
            try:
                both = cat_trees(states, [1, 1])
                picked = select_tree(both, torch.tensor([1, 0, 1]), 2)
            except StateError as exc:
                raise CheckFailure(
                    f"{name}: the state cannot be batched: {exc} (or declare "
                    "Capabilities(batched_state=False))"
                ) from exc
            steps = torch.cat([xs[0][:, short:], xs[1][:, long:]])
            expected = torch.cat([ys[0][:, short:], ys[1][:, long:]])
            copy = clone_tree(both)
            frozen = snapshot(both, f"{name}: state")
            _rows(body, steps, copy, name)
            if not same_values(both, frozen, f"{name}: state"):
                raise CheckFailure(f"{name}: stepping a clone of a state changed the original")
            assert_close(
                _rows(body, steps, both, name),
                expected,
                what=f"{name}: rows prefilled to {short} and {long} positions, concatenated and "
                "stepped together != each alone (shown as t=0..)",
            )
            assert_close(
                _rows(body, steps[[1, 0, 1]], picked, name),
                expected[[1, 0, 1]],
                what=f"{name}: rows selected as [1, 0, 1] and stepped != their sources",
            )


def _other_options(case: LayerCase) -> tuple[str, Any] | None:
    """A field and a valid example value of the layer's options other than the case's."""
    for field in attrs.fields(case.spec.options):
        for example in field.metadata.get("examples", ()):
            if example == getattr(case.options, field.name):
                continue
            values = {**attrs.asdict(case.options, recurse=False), field.name: example}
            record, problems = make_options(case.spec, values)
            if not problems and case.hidden_size % hidden_multiple(case.spec, record) == 0:
                return field.name, example
    return None


def _refused(model: Any, state: Any, x: torch.Tensor, expect: str, what: str) -> None:
    for mode in ("step", "prefill"):
        try:
            if mode == "step":
                model.step(x[:, 0], state)
            else:
                model.prefill(x, state)
        except StateError as exc:
            if expect not in str(exc):
                raise CheckFailure(
                    f"{what}: {mode} refused it, but the StateError does not name {expect!r}: {exc}"
                ) from exc
            continue
        except HybridZooError as exc:  # pragma: no cover - another error is a failure too
            raise CheckFailure(
                f"{what}: {mode} raised {type(exc).__name__}, not StateError"
            ) from exc
        raise CheckFailure(f"{what}: {mode} accepted it silently")


@register("state_refused_across_models", "state_ops")
def check_state_refused_across_models(case: LayerCase) -> None:
    """A state made by a model of another structure is refused by ``step`` and ``prefill``
    with a :class:`~hybridzoo.StateError` naming the difference: another hidden size, another
    number of blocks, and (where an option has an example other than the case's value) other
    options of the layer."""
    require_stateful(case)
    model = case_model(case)
    x = case.randn(case.batch, 2, case.hidden_size + 1, offset=4)
    wider = case.hidden_size + hidden_multiple(case.spec, case.options)
    others = [(case_model(case, hidden_size=wider), "hidden_size")]
    registry = private_registry(case.spec)
    with use_registry(registry):
        single = model_config(case, registry).replace(pattern=[case.name], registry=registry)
        others.append((build_model(single, case, registry), "block states"))
    changed = _other_options(case)
    if changed is not None:
        field, value = changed
        options = {**case.flat_options(), f"{case.spec.option_prefix}_{field}": value}
        with use_registry(registry):
            config = model_config(case, registry).replace(registry=registry, **options)
            others.append((build_model(config, case, registry), field))
    for other, expect in others:
        state = other.init_state(case.batch)
        _refused(model, state, x, expect, f"a state of a model with another {expect}")

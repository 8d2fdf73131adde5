"""The conformance kit catches broken layers: each deliberately broken toy fails its check.

The toy is a diagonal linear recurrence ``h_t = a ⊙ h_{t-1} + W x_t + b`` (``a = sigmoid(gate)``)
with a step mode; a ``fault`` argument breaks one contract at a time.
"""

from __future__ import annotations

import argparse
import io
import json
import subprocess
import sys
from pathlib import Path

import attrs
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.errors import InvalidArgument
from torch import nn

import hybridzoo
from hybridzoo import Capabilities, LayerSpec, Registry
from hybridzoo.plugin import at_least
from hybridzoo.testing import (
    API_VERSION,
    CHECKS,
    CONTRACTS,
    CheckFailure,
    CheckSkipped,
    ConformanceWarning,
    assert_conforms,
    layer_case,
    parametrize_with_checks,
    run_checks,
)
from hybridzoo.testing import strategies as hzst
from hybridzoo.testing.report import configure_parser, run

pytest_plugins = ["pytester", "hybridzoo.testing.pytest_plugin"]


# -- the toy layer ---------------------------------------------------------------------------------


class Recurrence(nn.Module):
    """``h_t = a ⊙ h_{t-1} + W x_t + b``, ``y_t = h_t`` (+ a zero-initialised gated term); with
    packed documents (``seq_idx``) ``h`` restarts from zero at each one."""

    def __init__(self, hidden_size: int, fault: str | None = None, chunk_size: int = 4) -> None:
        super().__init__()
        self.fault = fault
        self.chunk_size = chunk_size
        self.proj = nn.Linear(hidden_size, hidden_size)
        self.gate = nn.Parameter(torch.linspace(-1.0, 1.0, hidden_size))
        # zero at init: the gradient of `extra` is zero until `gain` moves (the kit jitters)
        self.gain = nn.Parameter(torch.zeros(hidden_size))
        self.extra = nn.Linear(hidden_size, hidden_size, bias=False)
        if fault == "unused_parameter":
            self.unused = nn.Parameter(torch.ones(hidden_size))

    def _drive(self, x: torch.Tensor) -> torch.Tensor:
        """The input term ``W x + b``, ``[..., H]``."""
        u = self.proj(x)
        if self.fault == "mixes_batch":
            u = u + 0.5 * x.mean(0, keepdim=True)
        return u

    def _out(self, h: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return h + self.gain * torch.tanh(self.extra(x))

    def init_state(self, batch_size: int) -> tuple[torch.Tensor, ...]:
        p = self.proj.weight
        h = torch.zeros(batch_size, p.shape[0], dtype=p.dtype, device=p.device)
        if self.fault == "state_on_module":  # the last h kept on the module, not in the state
            self.last = h.clone()
        if self.fault == "shared_counter":  # one position counter for the whole batch
            return h, torch.zeros((), dtype=torch.int64)
        return (h,)

    def prefill(
        self,
        x: torch.Tensor,
        state: tuple[torch.Tensor] | None = None,
        *,
        seq_idx: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, tuple[torch.Tensor]]:
        given = state
        if state is None or self.fault == "prefill_ignores_state":
            state = self.init_state(x.shape[0])
        a = torch.sigmoid(self.gate)
        u = self._drive(x)  # [B, L, H]
        if self.fault == "not_causal":
            u = u + 0.5 * x[:, -1:]
        if self.fault == "forward_wrong_decay":
            a = a * a
        if self.fault in ("masked_chunk", "inf_leaks") or (
            self.fault == "masked_small_chunk" and self.chunk_size <= 2
        ):
            # a chunked kernel's masked product: adds 0 · (the chunk's later inputs); with
            # "inf_leaks", NaN inputs are zeroed first (only an inf leaks)
            src = torch.where(x.isnan(), 0.0, x) if self.fault == "inf_leaks" else u
            pad = -x.shape[1] % self.chunk_size
            chunks = F.pad(src, (0, 0, 0, pad)).unflatten(1, (-1, self.chunk_size))  # [B,n,C,H]
            masked = 0.0 * chunks.sum(2, keepdim=True).expand_as(chunks)
            u = u + masked.flatten(1, 2)[:, : x.shape[1]]
        h = state[0]
        outs = []
        for t in range(x.shape[1]):
            if seq_idx is not None and t > 0 and self.fault != "packing_ignored":
                h = torch.where((seq_idx[:, t] != seq_idx[:, t - 1])[:, None], 0.0, h)
            h = a * h + u[:, t]
            outs.append(h)
        y = self._out(torch.stack(outs, 1), x)  # [B, L, H]
        if self.fault == "prefill_modifies_state" and given is not None:
            given[0].copy_(h)
        if self.fault == "state_on_module":
            self.last = h.clone()
        if self.fault == "shared_counter":
            return y, (h.clone(), torch.zeros((), dtype=torch.int64) + x.shape[1])
        return y, (h.clone(),)

    def forward(self, x: torch.Tensor, *, seq_idx: torch.Tensor | None = None) -> torch.Tensor:
        if self.fault == "modifies_input":
            x.mul_(0.5)
        y = self.prefill(x, seq_idx=seq_idx)[0]
        if self.fault == "drops_last_position":
            y = y[:, :-1]
        if self.fault == "float32_output":
            y = y.float()
        if self.fault == "nondeterministic":
            y = y + 1e-3 * torch.rand_like(y)
        if self.fault == "raises":
            raise RuntimeError("the toy layer is broken")
        return y

    def step(
        self, x_t: torch.Tensor, state: tuple[torch.Tensor]
    ) -> tuple[torch.Tensor, tuple[torch.Tensor]]:
        a = torch.sigmoid(self.gate)
        if self.fault == "step_wrong_decay":
            a = a * a
        previous = self.last if self.fault == "state_on_module" else state[0]
        h = a * previous + self._drive(x_t)
        if self.fault == "state_on_module":
            self.last = h.clone()
        if self.fault == "state_not_updated":
            return self._out(h, x_t), state
        if self.fault == "state_reallocated":
            return self._out(h, x_t), (h,)
        state[0].copy_(h)
        return self._out(h, x_t), state


def reference(
    body: Recurrence, x: torch.Tensor, *, seq_idx: torch.Tensor | None = None
) -> torch.Tensor:
    """The time-step loop, written independently (elementwise over channels)."""
    a = 1.0 / (1.0 + torch.exp(-body.gate))
    if body.fault == "reference_differs":
        a = a * 0.9
    u = x @ body.proj.weight.T + body.proj.bias
    h = torch.zeros_like(x[:, 0])
    out = []
    for t in range(x.shape[1]):
        if seq_idx is not None and t > 0:
            h = torch.where((seq_idx[:, t] == seq_idx[:, t - 1])[:, None], h, 0.0)
        h = a * h + u[:, t]
        out.append(h + body.gain * torch.tanh(x[:, t] @ body.extra.weight.T))
    return torch.stack(out, 1)


@attrs.frozen
class ToyOptions:
    """Options of the toy (prefix ``toy_``)."""

    width: int = hybridzoo.option(
        1,
        doc="A multiple of the hidden size (no effect).",
        validator=at_least(1),
        examples=(2,),
    )


def _count(options: ToyOptions, hidden_size: int) -> int:
    return 2 * hidden_size * hidden_size + 3 * hidden_size


@attrs.frozen
class ChunkedToyOptions:
    """The toy's options with a chunk size (the length of its kernel's chunks)."""

    chunk_size: int = hybridzoo.option(
        4, doc="Positions per chunk.", validator=at_least(1), examples=(1, 8)
    )


def toy_spec(fault: str | None = None, **changes: object) -> LayerSpec:
    """The toy layer's spec; ``fault`` breaks one contract (see the table below)."""
    fields: dict[str, object] = {
        "name": "toy",
        "symbol": "Q",
        "option_prefix": "toy",
        "options": ToyOptions,
        "factory": lambda o, h: Recurrence(h, fault, getattr(o, "chunk_size", 4)),
        "param_count": _count,
        "capabilities": Capabilities(causal=True, stateful=True, packing=True),
        "state_size": lambda o, h: h,
        "reference": reference,
    }
    if fault == "unused_parameter":
        fields["param_count"] = lambda o, h: _count(o, h) + h
    if fault == "wrong_param_count":
        fields["param_count"] = lambda o, h: _count(o, h) - 1
    if fault == "wrong_state_size":
        fields["state_size"] = lambda o, h: 2 * h
    fields.update(changes)
    return LayerSpec(**fields)  # type: ignore[arg-type]


# -- a correct layer passes -----------------------------------------------------------------------


def test_the_correct_toy_passes_every_check() -> None:
    results = assert_conforms(toy_spec())
    assert [r.check for r in results] == list(CHECKS)
    assert all(r.passed for r in results), [r for r in results if not r.passed]


def test_the_zero_initialised_path_is_not_a_false_alarm() -> None:
    """``extra`` gets a zero gradient at init (``gain`` is 0); the kit jitters and passes."""
    body = toy_spec().factory(ToyOptions(), 4)
    x = torch.randn(2, 3, 4)
    body(x).sum().backward()
    assert not body.extra.weight.grad.any()
    assert run_checks(toy_spec(), checks=["gradients_reach_parameters"])[0].passed


# -- each fault fails its check ------------------------------------------------------------------

#: the checks of step mode, and those of packed documents
STEP_CHECKS = frozenset({"step_equals_parallel", "prefill_then_step", "chunked_prefill"})
PACKING_CHECKS = frozenset(
    {"packed_equals_separate", "packed_containment", "packed_model", "packed_reference"}
)
#: the state checks that compare steps with forward: they fail with any step-mode fault
STATE_OPS = {"snapshot_rollback", "rows_select_cat"}

#: fault -> (checks that must fail, checks that may fail as a consequence)
FAULTS: dict[str, tuple[set[str], set[str]]] = {
    "wrong_param_count": ({"param_count_exact", "in_model"}, set()),
    "not_causal": (
        {"causal", "backward_containment", "packed_equals_separate", "packed_containment"},
        {*STEP_CHECKS, "reference_matches", "packed_model", "packed_reference", *STATE_OPS},
    ),
    "packing_ignored": ({"packed_equals_separate", "packed_model", "packed_reference"}, set()),
    "step_wrong_decay": (set(STEP_CHECKS), STATE_OPS),
    "forward_wrong_decay": (
        {"step_equals_parallel", "reference_matches", "packed_reference"},
        {"prefill_then_step", "chunked_prefill"} | STATE_OPS,
    ),
    "state_not_updated": (set(STEP_CHECKS), STATE_OPS),
    "state_on_module": (STATE_OPS, set()),
    "shared_counter": ({"rows_select_cat"}, set()),
    "masked_chunk": ({"backward_containment", "packed_containment"}, set()),
    "inf_leaks": ({"backward_containment", "packed_containment"}, set()),
    "prefill_modifies_state": ({"chunked_prefill"}, set()),
    "prefill_ignores_state": ({"prefill_then_step", "chunked_prefill"}, set()),
    "unused_parameter": ({"gradients_reach_parameters"}, set()),
    "mixes_batch": (
        {"batch_independent"},
        {
            "reference_matches",
            "rows_select_cat",
            "packed_equals_separate",
            "packed_model",
            "packed_reference",
        },
    ),
    "nondeterministic": ({"eval_deterministic"}, set(CHECKS)),
    "modifies_input": ({"eval_deterministic"}, set(CHECKS)),
    "wrong_state_size": ({"state_size_formula"}, set()),
    "reference_differs": ({"reference_matches", "packed_reference"}, set()),
    "drops_last_position": ({"shape"}, set(CHECKS)),
    "float32_output": ({"dtype_device"}, set(CHECKS)),
}


@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_each_fault_fails_its_check(fault: str) -> None:
    must, may = FAULTS[fault]
    results = run_checks(toy_spec(fault))
    failed = {r.check for r in results if r.failed}
    assert must <= failed, f"{fault}: expected {must} to fail, failed: {failed}"
    assert failed <= must | may, f"{fault}: unexpected failures {failed - must - may}"
    for r in results:
        if r.failed:
            assert r.reason, r


def test_failure_messages_are_precise() -> None:
    by_check = {r.check: r.reason for r in run_checks(toy_spec("wrong_param_count"))}
    assert "param_count(options, hidden_size=16) = 559, but the built bodies have 560" in (
        by_check["param_count_exact"] or ""
    )
    reason = run_checks(toy_spec("not_causal"), checks=["causal"])[0].reason or ""
    assert "not causal" in reason and "first at [b=0, t=0" in reason
    reason = run_checks(toy_spec("unused_parameter"), checks=["gradients_reach_parameters"])[0]
    assert "unused" in (reason.reason or "")
    reason = run_checks(toy_spec("wrong_state_size"), checks=["state_size_formula"])[0].reason
    assert reason == (
        "state_size(options, 16) = 32, but init_state holds 16 elements per sequence (plus 0 "
        "shared)"
    )


def _reason(fault: str, check: str, **kwargs: object) -> str:
    (result,) = run_checks(toy_spec(fault, **kwargs), checks=[check])
    assert result.failed, result
    return result.reason or ""


def test_a_state_that_step_leaves_unchanged_is_named() -> None:
    reason = _reason("state_not_updated", "step_equals_parallel")
    assert "state tensor 0 [2, 16] is unchanged after the step at t=0: step must update" in reason
    reason = _reason("state_not_updated", "prefill_then_step")
    assert "state tensor 0 [2, 16] is unchanged after the step at t=1" in reason  # after p=1


@pytest.mark.parametrize(
    ("fault", "check", "verdict"),
    [
        ("step_wrong_decay", "step_equals_parallel", "forward and the reference agree: step is"),
        ("forward_wrong_decay", "step_equals_parallel", "step and the reference agree: forward is"),
        ("forward_wrong_decay", "reference_matches", "the reference and step agree: forward is"),
        ("reference_differs", "reference_matches", "forward and step agree: the reference is"),
        ("step_wrong_decay", "prefill_then_step", "the prefill agree: steps is"),
    ],
)
def test_the_odd_one_out_of_forward_step_and_reference_is_named(
    fault: str, check: str, verdict: str
) -> None:
    assert f"{verdict} the odd one out" in _reason(fault, check)


def test_without_a_reference_the_tie_is_said_to_be_unbroken() -> None:
    reason = _reason("step_wrong_decay", "step_equals_parallel", reference=None)
    assert "no third computation to tell which is wrong: the spec declares no reference" in reason


def test_a_step_that_does_not_update_in_place_passes_with_a_warning() -> None:
    results = run_checks(toy_spec("state_reallocated"))
    assert not [r for r in results if r.failed]
    (step,) = [r for r in results if r.check == "step_equals_parallel"]
    assert step.warnings == (
        "Recurrence: the step at t=0 returned other state tensors than it was given instead of "
        "updating them in place (allowed: the core keeps what step returns; but each step then "
        "allocates)",
    )
    assert [r.check for r in results if r.warnings] == ["step_equals_parallel"]
    assert not [r for r in run_checks(toy_spec()) if r.warnings]


def test_a_causality_leak_says_how_far_it_reaches() -> None:
    reason = _reason("not_causal", "causal")
    assert "outputs that moved: t=0 by " in reason
    assert "the input at 10 moves outputs 0..9" in reason
    assert (
        "the farthest reaches back 10 positions (the input at 10 moves the output at 0)" in reason
    )


def test_backward_containment_plants_nan_and_inf() -> None:
    reason = _reason("masked_chunk", "backward_containment", options=ChunkedToyOptions)
    assert reason.startswith(
        "Recurrence in float32: an input of nan at position 1 changed the outputs before it, at "
        "positions 0 (they must stay bitwise equal)"
    )
    assert "position 0 starts the chunk (chunk_size=4) that holds position 1" in reason
    reason = _reason("inf_leaks", "backward_containment")
    assert "an input of inf at position 1" in reason


def test_backward_containment_tries_a_small_chunk_size() -> None:
    assert run_checks(toy_spec("masked_chunk_small", options=ChunkedToyOptions))[0].passed
    reason = _reason("masked_small_chunk", "backward_containment", options=ChunkedToyOptions)
    assert reason.startswith("Recurrence in float32, chunk_size=2: an input of nan at position 1")
    assert "position 0 starts the chunk (chunk_size=2)" in reason
    (result,) = run_checks(
        toy_spec("masked_small_chunk", options=ChunkedToyOptions),
        options={"chunk_size": 1},
        checks=["backward_containment"],
    )
    assert result.passed  # no chunk size below 1 to try


def test_chunked_prefill_catches_a_prefill_that_modifies_its_state() -> None:
    reason = _reason("prefill_modifies_state", "chunked_prefill")
    assert "prefill of chunk 1 (positions " in reason
    assert "modified the state it was given: prefill must leave it unchanged" in reason


def test_an_exception_inside_the_layer_is_a_failure_naming_it() -> None:
    results = run_checks(toy_spec("raises"), checks=["shape", "spec_valid"])
    assert [r.status for r in results] == ["failed", "passed"]
    assert "RuntimeError: the toy layer is broken" in (results[0].reason or "")
    assert "test_kit.py" in (results[0].reason or "")  # points at the layer's own line


def test_invalid_option_examples_fail_and_undocumented_options_warn() -> None:
    @attrs.frozen
    class Bare:
        width: int = 1  # no doc, no validator
        depth: int = hybridzoo.option(2, doc="Depth.", validator=at_least(1), examples=(0,))

    result = run_checks(toy_spec(options=Bare), checks=["options_documented"])[0]
    assert result.failed
    assert "toy_depth: example 0 is invalid" in result.reason
    assert "toy_width" not in result.reason
    (warning,) = result.warnings
    assert "option toy_width has no doc and no validator" in warning


@attrs.frozen
class PlainOptions:
    """Options written as plain attrs fields, as an outside author may."""

    width: int = attrs.field(default=1)
    scale: float = attrs.field(default=1.0, validator=attrs.validators.instance_of(float))


def test_a_plugin_with_plain_attrs_options_passes_with_warnings() -> None:
    with pytest.warns(ConformanceWarning) as caught:
        results = assert_conforms(toy_spec(options=PlainOptions))
    assert all(not r.failed for r in results)
    (documented,) = [r for r in results if r.check == "options_documented"]
    assert documented.passed
    assert documented.warnings == (
        "layer 'toy': option toy_width has no doc and no validator (declare it with "
        "hybridzoo.option(default, doc=..., validator=...))",
        "layer 'toy': option toy_scale has no doc (declare it with hybridzoo.option(default, "
        "doc=..., validator=...))",
    )
    assert [r.check for r in results if r.warnings] == ["options_documented"]
    kit_warnings = [str(w.message) for w in caught if w.category is ConformanceWarning]
    assert kit_warnings == [f"options_documented: {note}" for note in documented.warnings]


def test_options_that_do_not_survive_json_fail_the_round_trip() -> None:
    def pair(_inst: object, _attr: object, value: object) -> None:
        if not isinstance(value, tuple | list) or len(value) != 2:
            raise ValueError(f"must be a pair, got {value!r}")

    @attrs.frozen
    class Pair:
        sizes: tuple[int, int] = hybridzoo.option((1, 2), doc="Two sizes.", validator=pair)

    result = run_checks(toy_spec(options=Pair), checks=["config_round_trip"])[0]
    assert result.failed
    assert "the options record changed in the round trip" in result.reason


# -- positionwise layers ------------------------------------------------------------------------


class PerPosition(nn.Module):
    """``y = W₂ tanh(W₁ x)`` at each position; with ``mixes_time``, plus a running mean of the
    inputs (causal, but not per position)."""

    def __init__(self, hidden_size: int, mixes_time: bool = False) -> None:
        super().__init__()
        self.up = nn.Linear(hidden_size, 2 * hidden_size)
        self.down = nn.Linear(2 * hidden_size, hidden_size)
        self.mixes_time = mixes_time

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.down(torch.tanh(self.up(x)))
        if self.mixes_time:
            steps = torch.arange(1, x.shape[1] + 1, dtype=x.dtype, device=x.device)
            y = y + x.cumsum(1) / steps[:, None]
        return y


def positionwise_spec(mixes_time: bool = False) -> LayerSpec:
    return LayerSpec(
        name="pos",
        symbol="P",
        option_prefix="pos",
        options=ToyOptions,
        factory=lambda o, h: PerPosition(h, mixes_time),
        param_count=lambda o, h: 4 * h * h + 3 * h,
        capabilities=Capabilities(causal=True, positionwise=True),
    )


def test_a_positionwise_layer_gets_the_step_checks_through_the_core() -> None:
    results = {r.check: r for r in run_checks(positionwise_spec())}
    assert not [r for r in results.values() if r.failed]
    for name in sorted(STEP_CHECKS):
        assert results[name].passed, results[name]
    assert results["state_size_formula"].skipped
    assert "positionwise: it holds no state" in results["state_size_formula"].reason


def test_a_layer_declared_positionwise_that_mixes_time_fails() -> None:
    results = {r.check: r for r in run_checks(positionwise_spec(mixes_time=True))}
    failed = {name for name, r in results.items() if r.failed}
    assert failed == {*STEP_CHECKS, "packed_equals_separate", "packed_model", *STATE_OPS}
    assert "PerPosition: step outputs differ from forward" in results["step_equals_parallel"].reason


# -- skips --------------------------------------------------------------------------------------


def test_checks_that_do_not_apply_are_skipped_with_a_reason() -> None:
    spec = toy_spec(capabilities=Capabilities(causal=False, stateful=False), reference=None)
    results = {r.check: r for r in run_checks(spec)}
    skipped = {name for name, r in results.items() if r.skipped}
    assert skipped == {
        "causal",
        "backward_containment",
        "state_size_formula",
        "reference_matches",
        *STEP_CHECKS,
        *PACKING_CHECKS,
        "state_refused_across_models",
        *STATE_OPS,
    }
    assert "capabilities.stateful=False" in results["step_equals_parallel"].reason
    assert "capabilities.stateful=False" in results["snapshot_rollback"].reason
    assert "capabilities.causal=False" in results["causal"].reason
    assert "neither capabilities.packing nor positionwise" in results["packed_model"].reason
    assert "no reference" in results["reference_matches"].reason
    assert all(r.passed for r in results.values() if not r.skipped)
    with pytest.raises(CheckSkipped, match="stateful=False"):
        CHECKS["step_equals_parallel"](layer_case(spec))


def test_a_packing_body_whose_forward_takes_no_seq_idx_is_told_so() -> None:
    class NoKeyword(Recurrence):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.prefill(x)[0]

    spec = toy_spec(factory=lambda o, h: NoKeyword(h))
    reason = run_checks(spec, checks=["packed_equals_separate"])[0].reason or ""
    assert "NoKeyword.forward does not take the keyword seq_idx" in reason
    assert "forward(x, *, seq_idx=None)" in reason


def test_a_reference_without_seq_idx_skips_the_packed_reference_check() -> None:
    spec = toy_spec(reference=lambda body, x: reference(body, x))
    (result,) = run_checks(spec, checks=["packed_reference"])
    assert result.skipped and "takes no seq_idx keyword" in result.reason


def test_a_state_that_grows_with_the_sequence_is_skipped() -> None:
    result = run_checks(toy_spec(state_size=lambda o, h: None), checks=["state_size_formula"])[0]
    assert result.skipped and "grows with the sequence" in result.reason


def test_gradients_are_checked_on_several_positions() -> None:
    """At L=1 a decay has no effect on the output; the check uses L >= 8 and still passes."""
    assert run_checks(toy_spec(), length=1, checks=["gradients_reach_parameters"])[0].passed


# -- the API ----------------------------------------------------------------------------------


def test_assert_conforms_lists_every_failure() -> None:
    with pytest.raises(AssertionError) as info:
        assert_conforms(toy_spec("wrong_param_count"))
    text = str(info.value)
    assert text.startswith(f"layer 'toy' fails 2 of {len(CHECKS)} conformance checks:")
    assert "  - param_count_exact: " in text and "  - in_model: " in text


def test_a_check_raises_check_failure_carrying_its_name() -> None:
    with pytest.raises(CheckFailure) as info:
        CHECKS["batch_independent"](layer_case(toy_spec("mixes_batch")))
    assert info.value.check == "batch_independent"
    assert isinstance(info.value, AssertionError)


def test_every_check_documents_what_it_proves() -> None:
    assert API_VERSION == hybridzoo.PLUGIN_API_VERSION
    for name, check in CHECKS.items():
        assert check.name == name
        assert len(check.doc) > 40, name
        assert check.contract in CONTRACTS
    assert list(dict.fromkeys(c.contract for c in CHECKS.values())) == list(CONTRACTS)


def test_bad_arguments_are_errors() -> None:
    with pytest.raises(ValueError, match="unknown check 'casual'. Did you mean 'causal'"):
        run_checks(toy_spec(), checks=["casual"])
    with pytest.raises(ValueError, match="hidden_size=6 is not a multiple of 4"):
        layer_case(toy_spec(hidden_size_multiple=lambda o: 4), hidden_size=6)
    with pytest.raises(hybridzoo.OptionError, match="toy_width"):
        layer_case(toy_spec(), options={"width": 0})
    with pytest.raises(ValueError, match="length must be an integer >= 1"):
        layer_case(toy_spec(), length=0)
    with pytest.raises(TypeError, match="LayerSpec or a layer name"):
        run_checks(3)  # type: ignore[arg-type]


def test_options_are_taken_as_a_record_or_by_field_or_user_name() -> None:
    spec = toy_spec()
    assert layer_case(spec, options={"width": 2}).options == ToyOptions(2)
    assert layer_case(spec, options={"toy_width": 2}).options == ToyOptions(2)
    assert layer_case(spec, options=ToyOptions(3)).options == ToyOptions(3)
    assert layer_case(spec, hidden_size=None).hidden_size == 16
    assert layer_case(spec, options=None).hidden_size == 16
    assert layer_case(toy_spec(hidden_size_multiple=lambda o: 12)).hidden_size == 24


def test_the_kit_leaves_the_global_random_state_alone() -> None:
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    run_checks(toy_spec(), checks=["shape", "gradients_reach_parameters"])
    assert torch.equal(torch.rand(3), expected)


# -- strategies -----------------------------------------------------------------------------------


@given(hzst.layer_options(toy_spec()))
def test_layer_options_draw_defaults_and_examples(options: ToyOptions) -> None:
    assert options.width in (1, 2)


@given(hzst.hidden_sizes(toy_spec(hidden_size_multiple=lambda o: 4 * o.width), ToyOptions(2)))
def test_hidden_sizes_respect_the_multiple(hidden: int) -> None:
    assert hidden % 8 == 0 and 8 <= hidden <= 32


@given(hzst.layer_cases(toy_spec(), batch=st.integers(2, 3), length=5))
def test_layer_cases(case) -> None:
    assert case.spec.name == "toy" and 2 <= case.batch <= 3 and case.length == 5
    CHECKS["step_equals_parallel"](case)


@given(hzst.inputs(hidden=5, batch=2, length=st.integers(1, 4), dtype=torch.float32))
def test_inputs(x: torch.Tensor) -> None:
    assert x.shape[0] == 2 and 1 <= x.shape[1] <= 4 and x.shape[2] == 5
    assert x.dtype == torch.float32


def test_patterns_draw_from_the_registry() -> None:
    registry = Registry(autoload=False)
    registry.register(toy_spec())
    with hybridzoo.use_registry(registry):

        @given(hzst.patterns(min_layers=2, max_layers=3))
        def inner(pattern: list[str]) -> None:
            assert 2 <= len(pattern) <= 3 and set(pattern) == {"toy"}

        inner()


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: hzst.patterns(min_layers=0), "min_layers must be an integer >= 1"),
        (lambda: hzst.patterns(min_layers=3, max_layers=2), "max_layers=2 must be >= min"),
        (lambda: hzst.patterns(layers=["no_such_layer"]), "unknown layer 'no_such_layer'"),
        (lambda: hzst.hidden_sizes(toy_spec(), min_multiple=0), "min_multiple must be"),
        (lambda: hzst.hidden_sizes(toy_spec(), min_multiple=3, max_multiple=2), "max_multiple"),
        (lambda: hzst.inputs(hidden=0), "hidden must be an integer >= 1"),
        (lambda: hzst.layer_cases(toy_spec(), batch=0), "batch must be"),
        (lambda: hzst.layer_cases("no_such_layer"), "unknown layer"),
        (lambda: hzst.layer_options(toy_spec(options=_BadExample)), "example -1 of option"),
    ],
)
def test_strategies_validate_their_arguments_eagerly(make, message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        make()


@attrs.frozen
class _BadExample:
    width: int = hybridzoo.option(1, doc="Width.", validator=at_least(1), examples=(-1,))


@attrs.frozen
class _Clashing:
    """Two options each valid alone whose examples clash: ``low < high`` as a whole."""

    low: int = hybridzoo.option(1, doc="Low.", validator=at_least(1), examples=(2, 3))
    high: int = hybridzoo.option(4, doc="High.", validator=at_least(1), examples=(2,))

    def __attrs_post_init__(self) -> None:
        if not self.low < self.high:
            raise ValueError(f"toy_low={self.low} must be < toy_high={self.high}")


@given(hzst.layer_options(toy_spec(options=_Clashing)))
def test_layer_options_redraw_combinations_the_record_refuses(options: _Clashing) -> None:
    assert options.low < options.high


# -- the pytest plugin ----------------------------------------------------------------------------


@parametrize_with_checks(toy_spec(), checks=["shape", "causal", "reference_matches"])
def test_parametrize_with_checks_on_a_spec(check) -> None:
    check()


def test_temporary_layers_are_gone_after_the_test(temporary_layer) -> None:
    before = hybridzoo.list_layers()
    temporary_layer(toy_spec(name="toy_tmp", symbol="Z", option_prefix="toy_tmp"))
    assert "toy_tmp" in hybridzoo.list_layers()
    hybridzoo.unregister_layer("toy_tmp")
    assert hybridzoo.list_layers() == before


def test_the_plugin_in_a_plugin_authors_test_run(pytester: pytest.Pytester) -> None:
    """A plugin author's test file: a failing check fails, a skip shows its reason."""
    pytester.makepyfile(
        test_author=f"""
        import sys

        import pytest

        sys.path.insert(0, {str(Path(__file__).parent)!r})
        import hybridzoo
        from hybridzoo.testing import parametrize_with_checks, run_checks
        from test_kit import toy_spec

        @parametrize_with_checks(toy_spec("mixes_batch"), checks=["shape", "batch_independent"])
        def test_broken(check):
            check()

        @parametrize_with_checks(toy_spec(reference=None), checks=["reference_matches"])
        def test_skips(check):
            check()

        @pytest.mark.hybridzoo_registry(autoload=False)
        def test_fixtures(hybridzoo_registry, temporary_layer):
            assert hybridzoo.get_registry() is hybridzoo_registry
            assert hybridzoo_registry.strict and hybridzoo_registry.names() == []
            temporary_layer(toy_spec())
            assert hybridzoo.list_layers() == ["toy"]
            assert run_checks("toy", checks=["in_model"])[0].passed

        @pytest.mark.hybridzoo_registry(autoload=False)
        def test_after(hybridzoo_registry):
            assert "toy" not in hybridzoo_registry
        """
    )
    result = pytester.runpytest(
        "-p",
        "hybridzoo.testing.pytest_plugin",
        "-rs",
        "-v",
        "-p",
        "no:cacheprovider",
        "-W",
        "error::pytest.PytestUnknownMarkWarning",
    )
    result.assert_outcomes(passed=3, failed=1, skipped=1)
    result.stdout.fnmatch_lines(
        [
            "*test_broken?toy-shape? PASSED*",
            "*test_broken?toy-batch_independent? FAILED*",
            "*SKIPPED*declares no reference*",
        ]
    )


def test_the_registry_fixture_is_strict(pytester: pytest.Pytester) -> None:
    """An installed plugin that implements no hook raises in the fixture's registry."""
    pytester.makepyfile(
        test_strict="""
        import importlib.metadata as md

        import pytest

        import hybridzoo

        BROKEN = md.EntryPoint("broken", "hybridzoo.errors", "hybridzoo.layers")

        @pytest.mark.hybridzoo_registry(entry_points=[BROKEN])
        def test_strict(hybridzoo_registry):
            with pytest.raises(hybridzoo.PluginError, match="implements no hybridzoo hook"):
                hybridzoo_registry.names()
        """
    )
    result = pytester.runpytest("-p", "hybridzoo.testing.pytest_plugin", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)


def test_loading_the_plugin_imports_no_torch() -> None:
    code = (
        "import sys, hybridzoo.testing.pytest_plugin, hybridzoo.testing; "
        "assert 'torch' not in sys.modules and 'hypothesis' not in sys.modules, "
        "sorted(m for m in sys.modules if m.startswith(('torch', 'hypothesis')))[:5]"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


# -- check-plugin ----------------------------------------------------------------------------------


def _run_cli(argv: list[str]) -> tuple[int, str, str]:
    parser = argparse.ArgumentParser()
    configure_parser(parser)
    out, err = io.StringIO(), io.StringIO()
    return run(parser.parse_args(argv), out=out, err=err), out.getvalue(), err.getvalue()


def test_check_plugin_reports_pass_fail_and_skip() -> None:
    registry = Registry(autoload=False)
    registry.register(toy_spec("mixes_batch", reference=None))
    with hybridzoo.use_registry(registry):
        code, out, _ = _run_cli(
            [
                "toy",
                "--check",
                "shape",
                "--check",
                "batch_independent",
                "--check",
                "reference_matches",
                "-o",
                "width=2",
            ]
        )
        assert code == 1
        lines = out.splitlines()
        assert lines[0] == "check-plugin toy (registered at run time)"
        assert "ToyOptions(width=2)" in lines[1]
        assert any(line.split()[:2] == ["shape", "pass"] for line in lines)
        assert any(line.split()[:2] == ["batch_independent", "FAIL"] for line in lines)
        assert any(
            line.split()[:2] == ["reference_matches", "skipped"] and "no reference" in line
            for line in lines
        )
        assert lines[-1] == "1 passed, 1 failed, 1 skipped"

        code, out, _ = _run_cli(["toy", "--json", "--check", "shape"])
        assert code == 0
        report = json.loads(out)
        assert report["passed"] is True and report["layer"] == "toy"
        assert report["results"] == [
            {"layer": "toy", "check": "shape", "status": "passed", "reason": None, "warnings": []}
        ]

        code, _, err = _run_cli(["tyo"])
        assert code == 2 and "Did you mean 'toy'" in err
        code, _, err = _run_cli(["toy", "--check", "casual"])
        assert code == 2 and "Did you mean 'causal'" in err


def test_check_plugin_shows_warnings_and_passes() -> None:
    registry = Registry(autoload=False)
    registry.register(toy_spec(options=PlainOptions))
    with hybridzoo.use_registry(registry):
        code, out, _ = _run_cli(["toy", "--check", "options_documented", "--check", "shape"])
        assert code == 0
        lines = out.splitlines()
        row = lines.index(next(line for line in lines if line.startswith("options_documented")))
        assert lines[row].split()[:2] == ["options_documented", "pass"]
        assert (
            lines[row + 1].strip().startswith("warning: layer 'toy': option toy_width has no doc")
        )
        assert (
            lines[row + 2].strip().startswith("warning: layer 'toy': option toy_scale has no doc")
        )
        assert lines[-1] == "2 passed, 0 failed, 0 skipped, 2 warnings"
        code, out, _ = _run_cli(["toy", "--json", "--check", "options_documented"])
        assert code == 0
        (result,) = json.loads(out)["results"]
        assert result["status"] == "passed" and len(result["warnings"]) == 2


@pytest.mark.parametrize("device", ["bogus", "cuda:99"])
def test_check_plugin_with_a_bad_device_is_a_usage_error(device: str) -> None:
    registry = Registry(autoload=False)
    registry.register(toy_spec())
    with hybridzoo.use_registry(registry):
        code, out, err = _run_cli(["toy", "--device", device])
    assert code == 2 and out == ""
    assert f"error: device {device!r} cannot be used here" in err
    with pytest.raises(ValueError, match="device 'bogus' cannot be used here"):
        layer_case(toy_spec(), device="bogus")


def test_the_kit_hides_its_own_frames_from_tracebacks(pytester: pytest.Pytester) -> None:
    """A failing check shows the author's test and the message; a layer that raises shows the
    layer's own line; neither shows a frame of hybridzoo.testing."""
    pytester.makepyfile(
        test_author=f"""
        import sys

        sys.path.insert(0, {str(Path(__file__).parent)!r})
        from hybridzoo.testing import parametrize_with_checks
        from test_kit import toy_spec

        @parametrize_with_checks(toy_spec("mixes_batch"), checks=["batch_independent"])
        def test_broken(check):
            check()

        @parametrize_with_checks(toy_spec("raises"), checks=["shape"])
        def test_raises(check):
            check()
        """
    )
    result = pytester.runpytest("-p", "no:cacheprovider", "--tb=long")
    result.assert_outcomes(failed=2)
    text = result.stdout.str()
    assert "hybridzoo/testing/" not in text and "hybridzoo\\\\testing\\\\" not in text
    result.stdout.fnmatch_lines(
        [
            "*CheckFailure: MixesBatch*rows*"
            if False
            else "*CheckFailure: Recurrence: row 0 alone*",
            '*raise RuntimeError("the toy layer is broken")*',
        ],
        consecutive=False,
    )


def test_parametrize_with_checks_marks_known_failures_strictly(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_known=f"""
        import sys

        import pytest

        sys.path.insert(0, {str(Path(__file__).parent)!r})
        from hybridzoo.testing import parametrize_with_checks
        from test_kit import toy_spec

        @parametrize_with_checks(
            toy_spec("mixes_batch"),
            checks=["shape", "batch_independent"],
            xfail={{("toy", "batch_independent"): "rows are mixed, fix pending"}},
        )
        def test_known(check):
            check()

        @parametrize_with_checks(toy_spec(), checks=["shape"], xfail={{"shape": "fixed already"}})
        def test_fixed(check):
            check()

        def test_bad_keys():
            with pytest.raises(ValueError, match="names the check 'shpe'"):
                parametrize_with_checks(toy_spec(), checks=["shape"], xfail={{"shpe": "typo"}})
            with pytest.raises(ValueError, match="names the layer 'other'"):
                parametrize_with_checks(toy_spec(), xfail={{("other", "shape"): "why"}})
            with pytest.raises(ValueError, match="must be a reason"):
                parametrize_with_checks(toy_spec(), xfail={{"shape": ""}})
        """
    )
    result = pytester.runpytest("-p", "no:cacheprovider", "-rxX")
    result.assert_outcomes(passed=2, xfailed=1, failed=1)
    result.stdout.fnmatch_lines(["*[[]XPASS(strict)[]] fixed already*"])
    result.stdout.fnmatch_lines(["XFAIL*toy-batch_independent*rows are mixed, fix pending"])


def test_the_kit_takes_a_factory_decorated_with_hybridzoo_layer() -> None:
    registry = Registry(autoload=False)
    with hybridzoo.use_registry(registry):

        @hybridzoo.layer(
            name="toy",
            symbol="Q",
            options=ToyOptions,
            param_count=_count,
            capabilities=Capabilities(causal=True, stateful=True),
            state_size=lambda o, h: h,
        )
        def toy(options: ToyOptions, hidden_size: int) -> nn.Module:
            """The toy recurrence."""
            return Recurrence(hidden_size)

        assert isinstance(toy.spec, LayerSpec) and toy.spec is registry.get("toy")
        assert all(r.passed for r in run_checks(toy, checks=["shape", "step_equals_parallel"]))
        mark = parametrize_with_checks(toy, checks=["shape"])
        assert [p.id for p in mark.args[1]] == ["toy-shape"]


def test_the_command_line_treats_a_bad_device_as_a_usage_error(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from hybridzoo.cli import main

    assert main(["check-plugin", "ffn", "--check", "shape", "--device", "bogus"]) == 2
    captured = capsys.readouterr()
    assert "device 'bogus' cannot be used here" in captured.err and captured.out == ""

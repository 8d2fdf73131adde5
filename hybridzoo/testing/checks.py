"""The contract checks: one named function per contract of DESIGN.md, run on a :class:`LayerCase`.

A check takes a layer case (a spec, its options record, a hidden size, a batch size, a length, a
dtype, a device and a seed), returns ``None`` when the layer keeps the contract, raises
:class:`~hybridzoo.testing.CheckFailure` with a precise message when it does not, and
:class:`~hybridzoo.testing.CheckSkipped` with a reason when the contract does not apply (step
checks on a layer that is not stateful, causality on a non-causal one, the reference check when the
spec has no reference).

Tolerances (see :func:`tolerances`): comparisons between two computations of the same maths
(step vs forward, prefill vs forward, one row vs a batch, fast kernel vs reference) pass when
``|actual - expected| <= atol + rtol * |expected|`` elementwise, with ``atol=1e-8, rtol=1e-6`` in
float64 (the default dtype of a case) and ``atol=1e-4, rtol=1e-3`` in float32. NaN never passes.
Determinism and the config round trip are compared exactly (``torch.equal``).

Every check builds its bodies afresh under ``torch.manual_seed(case.seed)`` inside
``torch.random.fork_rng`` (the caller's random state is left alone), so a check's outcome is
reproducible. On CPU a check runs with one intra-op thread (``torch.set_num_threads(1)``,
restored afterwards): the tensors are tiny and threads only add overhead.

    >>> from hybridzoo.testing import run_checks
    >>> [r.status for r in run_checks("mylayer", checks=["shape", "param_count_exact"])]
    ['passed', 'passed']
"""

from __future__ import annotations

import contextlib
import json
import math
import os
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

import attrs
import torch
from torch import nn

from hybridzoo.config import HybridConfig
from hybridzoo.counting import param_count as model_param_count
from hybridzoo.errors import HybridZooError, OptionError, close_matches
from hybridzoo.model import HybridModel, build_bodies
from hybridzoo.options import make_options
from hybridzoo.registry import Registry, get_registry, use_registry
from hybridzoo.spec import LayerSpec, validate_spec
from hybridzoo.testing.results import CheckFailure, CheckResult, CheckSkipped

__all__ = [
    "CHECKS",
    "Check",
    "LayerCase",
    "assert_conforms",
    "default_hidden_size",
    "layer_case",
    "resolve_options",
    "resolve_spec",
    "run_checks",
    "tolerances",
]

#: Default sizes of a case: small, so the whole kit runs on one layer in a couple of seconds.
DEFAULT_BATCH = 2
DEFAULT_LENGTH = 11
#: The default hidden size is the smallest multiple of the layer's ``hidden_size_multiple``
#: that is at least this.
DEFAULT_HIDDEN_TARGET = 16
#: The gradient check runs on at least this many positions.
GRADIENT_MIN_LENGTH = 8

_TOLERANCES = {torch.float64: (1e-8, 1e-6), torch.float32: (1e-4, 1e-3)}


def tolerances(dtype: torch.dtype) -> tuple[float, float]:
    """``(atol, rtol)`` of the kit's comparisons in ``dtype``.

    float64: ``(1e-8, 1e-6)``; float32: ``(1e-4, 1e-3)``; other dtypes: ``(1e-2, 1e-2)``.
    """
    return _TOLERANCES.get(dtype, (1e-2, 1e-2))


# -- the case ----------------------------------------------------------------------------------


def resolve_spec(spec_or_name: LayerSpec | str, registry: Registry | None = None) -> LayerSpec:
    """A spec given as itself, or by name or symbol in ``registry`` (default: the default one)."""
    if isinstance(spec_or_name, LayerSpec):
        return spec_or_name
    if isinstance(spec_or_name, str):
        return (registry or get_registry()).resolve(spec_or_name)
    raise TypeError(
        f"expected a hybridzoo.LayerSpec or a layer name, got {type(spec_or_name).__name__}: "
        f"{spec_or_name!r:.80}"
    )


def resolve_options(spec: LayerSpec, options: Any = None) -> Any:
    """``spec``'s options record from ``None`` (defaults), a record, or a mapping.

    A mapping may use field names (``width``) or user option names (``mylayer_width``).
    Invalid values raise :class:`hybridzoo.OptionError`.
    """
    if options is None:
        return spec.options()
    if isinstance(options, spec.options):
        return options
    if not isinstance(options, Mapping):
        raise TypeError(
            f"options for layer {spec.name!r} must be None, a {spec.options.__name__} record or "
            f"a mapping of option names to values, got {type(options).__name__}"
        )
    fields = {f.name for f in attrs.fields(spec.options)}
    prefix = f"{spec.option_prefix}_"
    values: dict[str, Any] = {}
    for key, value in options.items():
        if key not in fields and key.startswith(prefix) and key[len(prefix) :] in fields:
            key = key[len(prefix) :]
        values[key] = value
    record, problems = make_options(spec, values)
    if problems:
        raise OptionError(problems)
    return record


def _multiple(spec: LayerSpec, options: Any) -> int:
    if spec.hidden_size_multiple is None:
        return 1
    multiple = spec.hidden_size_multiple(options)
    if isinstance(multiple, bool) or not isinstance(multiple, int) or multiple < 1:
        raise CheckFailure(
            f"layer {spec.name!r}: hidden_size_multiple({options!r}) must return an integer >= 1, "
            f"got {multiple!r}"
        )
    return multiple


def default_hidden_size(
    spec: LayerSpec, options: Any, *, target: int = DEFAULT_HIDDEN_TARGET
) -> int:
    """The smallest multiple of ``spec.hidden_size_multiple(options)`` that is ``>= target``."""
    multiple = _multiple(spec, options)
    return multiple * max(1, math.ceil(target / multiple))


def _check_positive(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    return value


@attrs.frozen
class LayerCase:
    """One configuration of one layer on which the checks run.

    Build one with :func:`layer_case` (which picks the defaults) or draw one with
    :func:`hybridzoo.testing.strategies.layer_cases`.

    Attributes:
        spec: the layer.
        options: its options record.
        hidden_size: ``H``; a multiple of ``spec.hidden_size_multiple(options)``.
        batch: ``B >= 1`` of the inputs (checks that need two rows use at least 2).
        length: ``L >= 1`` of the inputs (causality needs ``L >= 2``).
        dtype: the dtype of the exact-maths checks (float64 by default).
        seed: seeds the parameters and inputs.
        device: where the bodies run (``"cpu"``, ``"cuda"``, ...).
    """

    spec: LayerSpec
    options: Any
    hidden_size: int
    batch: int = DEFAULT_BATCH
    length: int = DEFAULT_LENGTH
    dtype: torch.dtype = torch.float64
    seed: int = 0
    device: str = "cpu"

    @property
    def name(self) -> str:
        return self.spec.name

    def flat_options(self) -> dict[str, Any]:
        """The options as the user spells them (``<prefix>_<field>``), every field."""
        return {
            f"{self.spec.option_prefix}_{f.name}": getattr(self.options, f.name)
            for f in attrs.fields(self.spec.options)
        }

    def describe(self) -> str:
        """A one-line summary used in failure messages."""
        return (
            f"layer {self.spec.name!r} with {self.options!r}, hidden_size={self.hidden_size}, "
            f"batch={self.batch}, length={self.length}, {str(self.dtype).replace('torch.', '')}, "
            f"seed={self.seed}, device={self.device}"
        )

    def bodies(
        self, *, dtype: torch.dtype | None = None, hidden_size: int | None = None
    ) -> list[nn.Module]:
        """Build the bodies (seeded), move them to the case's device and dtype, eval mode."""
        with _seeded(self.seed):
            bodies = build_bodies(self.spec, self.options, hidden_size or self.hidden_size)
        return [b.to(device=self.device, dtype=dtype or self.dtype).eval() for b in bodies]

    def randn(self, *shape: int, offset: int = 0, dtype: torch.dtype | None = None) -> torch.Tensor:
        """Standard normal values, reproducible from ``(seed, offset)``."""
        gen = torch.Generator().manual_seed(self.seed * 7919 + offset)
        out = torch.randn(*shape, generator=gen, dtype=torch.float64)
        return out.to(device=self.device, dtype=dtype or self.dtype)

    def inputs(
        self, batch: int | None = None, length: int | None = None, *, offset: int = 0
    ) -> torch.Tensor:
        """An input ``[B, L, H]`` (defaults: the case's batch and length)."""
        return self.randn(
            batch or self.batch, length or self.length, self.hidden_size, offset=offset
        )


def layer_case(
    spec_or_name: LayerSpec | str,
    *,
    options: Any = None,
    hidden_size: int | None = None,
    batch: int = DEFAULT_BATCH,
    length: int = DEFAULT_LENGTH,
    dtype: torch.dtype = torch.float64,
    seed: int = 0,
    device: str | torch.device = "cpu",
    registry: Registry | None = None,
) -> LayerCase:
    """Make a :class:`LayerCase`, validating every argument.

    Args:
        spec_or_name: a :class:`hybridzoo.LayerSpec`, or the name/symbol of a registered layer.
        options: ``None`` (defaults), an options record or a mapping (see
            :func:`resolve_options`).
        hidden_size: default: :func:`default_hidden_size` (16 rounded up to the layer's multiple).
        batch, length, dtype, seed, device: see :class:`LayerCase`.
        registry: where names are looked up (default: the default registry).
    """
    spec = resolve_spec(spec_or_name, registry)
    record = resolve_options(spec, options)
    multiple = _multiple(spec, record)
    if hidden_size is None:
        hidden_size = default_hidden_size(spec, record)
    _check_positive("hidden_size", hidden_size)
    if hidden_size % multiple:
        raise ValueError(
            f"hidden_size={hidden_size} is not a multiple of {multiple}, which layer "
            f"{spec.name!r} requires with {record!r}"
        )
    _check_positive("batch", batch)
    _check_positive("length", length)
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise TypeError(f"dtype must be a floating torch.dtype, got {dtype!r}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be an integer >= 0, got {seed!r}")
    return LayerCase(spec, record, hidden_size, batch, length, dtype, seed, str(device))


# -- helpers -------------------------------------------------------------------------------------


@contextlib.contextmanager
def _seeded(seed: int) -> Iterator[None]:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


@contextlib.contextmanager
def _one_thread(device: str) -> Iterator[None]:
    """Run on one CPU thread: the kit's tensors are tiny, and several intra-op threads only add
    overhead (tens of times slower on a busy machine). Restored afterwards."""
    if not device.startswith("cpu"):
        yield
        return
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _label(body: nn.Module, index: int, count: int) -> str:
    return f"body {index} ({type(body).__name__})" if count > 1 else type(body).__name__


def _index(idx: Sequence[int], ndim: int) -> str:
    names = {3: ("b", "t", "h"), 2: ("b", "h")}.get(ndim)
    if names is None:
        return str(list(idx))
    return "[" + ", ".join(f"{n}={i}" for n, i in zip(names, idx, strict=True)) + "]"


def _tensor(value: Any, what: str) -> torch.Tensor:
    if not isinstance(value, torch.Tensor):
        raise CheckFailure(f"{what} must be a torch.Tensor, got {type(value).__name__}")
    return value


def assert_close(
    actual: torch.Tensor, expected: torch.Tensor, *, what: str, dtype: torch.dtype | None = None
) -> None:
    """Raise :class:`CheckFailure` unless ``actual`` matches ``expected`` within the kit's
    tolerances for ``dtype`` (default: ``expected.dtype``); the message names the first and the
    worst differing elements (``[b, t, h]`` for sequences)."""
    actual = _tensor(actual, what)
    if actual.shape != expected.shape:
        raise CheckFailure(f"{what}: shape {list(actual.shape)}, expected {list(expected.shape)}")
    atol, rtol = tolerances(dtype or expected.dtype)
    a, e = actual.detach().to(torch.float64), expected.detach().to(torch.float64)
    diff = (a - e).abs()
    bad = ~(diff <= atol + rtol * e.abs())  # NaN is bad
    if not bad.any():
        return
    first = tuple(int(i) for i in torch.nonzero(bad)[0])
    worst_flat = int(torch.nan_to_num(diff, nan=math.inf).argmax())
    worst = tuple(int(i) for i in torch.unravel_index(torch.tensor(worst_flat), diff.shape))
    nd = diff.dim()
    raise CheckFailure(
        f"{what}: {int(bad.sum())} of {bad.numel()} elements differ beyond atol={atol:g}, "
        f"rtol={rtol:g}; first at {_index(first, nd)} (got {a[first].item():.6g}, expected "
        f"{e[first].item():.6g}); largest |diff| {diff[worst].item():.3g} at {_index(worst, nd)}"
    )


def _finite(y: torch.Tensor, what: str) -> None:
    if not torch.isfinite(y).all():
        bad = torch.nonzero(~torch.isfinite(y))[0].tolist()
        raise CheckFailure(f"{what}: non-finite output (first at {_index(bad, y.dim())})")


def _state_tensors(state: Any, what: str) -> list[torch.Tensor]:
    """The tensors of a state (a tuple of tensors, possibly nested in tuples/lists)."""
    if isinstance(state, torch.Tensor):
        return [state]
    if isinstance(state, tuple | list):
        out: list[torch.Tensor] = []
        for item in state:
            out.extend(_state_tensors(item, what))
        return out
    if state is None:
        return []
    raise CheckFailure(
        f"{what}: a state must be a tuple of tensors, found a {type(state).__name__}"
    )


def _require_stateful(case: LayerCase) -> None:
    if not case.spec.capabilities.stateful:
        raise CheckSkipped(
            f"layer {case.name!r} declares capabilities.stateful=False (no init_state/step/prefill)"
        )


def _forward(body: nn.Module, x: torch.Tensor, what: str) -> torch.Tensor:
    y = _tensor(body(x), f"{what}: forward")
    if y.shape != x.shape:
        raise CheckFailure(
            f"{what}: forward maps {list(x.shape)} to {list(y.shape)}, expected {list(x.shape)}"
        )
    return y


def _step_pair(result: Any, what: str) -> tuple[torch.Tensor, Any]:
    if not (isinstance(result, tuple) and len(result) == 2):
        raise CheckFailure(f"{what} must return (output, state), got {type(result).__name__}")
    return result


def _run_steps(body: nn.Module, x: torch.Tensor, state: Any, what: str) -> tuple[torch.Tensor, Any]:
    """Step ``body`` through ``x [B, T, H]`` from ``state``; ``[B, T, H]`` outputs, final state."""
    outs = []
    for t in range(x.shape[1]):
        y_t, state = _step_pair(body.step(x[:, t], state), f"{what}: step")
        y_t = _tensor(y_t, f"{what}: step output")
        if y_t.shape != x[:, t].shape:
            raise CheckFailure(
                f"{what}: step maps x_t {list(x[:, t].shape)} to {list(y_t.shape)}, expected "
                f"{list(x[:, t].shape)}"
            )
        outs.append(y_t)
    return torch.stack(outs, dim=1), state  # [B, T, H]


def _private_registry(spec: LayerSpec) -> Registry:
    """A registry holding ``spec`` alone (no entry points), for the model-level checks."""
    registry = Registry(autoload=False, strict=True, disabled=())
    try:
        registry.register(spec)
    except HybridZooError as exc:
        raise CheckFailure(f"the spec cannot be registered: {exc}") from exc
    return registry


def _model_config(case: LayerCase, registry: Registry, **model: Any) -> HybridConfig:
    settings: dict[str, Any] = {
        "embed_dim": case.hidden_size + 1,
        "hidden_size": case.hidden_size,
        "dropout": 0.0,
        "output": "sequence",
    }
    settings.update(model)
    try:
        return HybridConfig.create(
            [case.name, case.name], registry=registry, **settings, **case.flat_options()
        )
    except HybridZooError as exc:
        raise CheckFailure(f"HybridConfig.create rejects the layer's own options: {exc}") from exc


def _build_model(config: HybridConfig, case: LayerCase, registry: Registry) -> HybridModel:
    with _seeded(case.seed):
        model = HybridModel(config, registry=registry)
    return model.to(device=case.device, dtype=case.dtype).eval()


# -- the registry of checks ----------------------------------------------------------------------


@attrs.frozen
class Check:
    """One named contract check.

    Attributes:
        name: the check's name (``"step_equals_parallel"``).
        function: ``(case: LayerCase) -> None``; raises :class:`CheckFailure` or
            :class:`CheckSkipped`.
        contract: the contract of DESIGN.md it proves (``"4"``), or ``"spec"`` for the plugin
            declaration rules.
        doc: what a pass proves (the function's docstring).
    """

    name: str
    function: Callable[[LayerCase], None]
    contract: str
    doc: str

    def __call__(self, case: LayerCase) -> None:
        try:
            with _one_thread(case.device):
                self.function(case)
        except CheckFailure as exc:
            if exc.check is None:
                exc.check = self.name
            raise

    @property
    def summary(self) -> str:
        """The first line of :attr:`doc`."""
        return self.doc.strip().splitlines()[0] if self.doc.strip() else ""


#: Every check by name, in the order they run (cheap declaration checks first).
CHECKS: dict[str, Check] = {}


def _check(
    name: str, contract: str
) -> Callable[[Callable[[LayerCase], None]], Callable[[LayerCase], None]]:
    def register(function: Callable[[LayerCase], None]) -> Callable[[LayerCase], None]:
        CHECKS[name] = Check(name, function, contract, " ".join((function.__doc__ or "").split()))
        return function

    return register


# -- declaration checks --------------------------------------------------------------------------


@_check("spec_valid", "spec")
def check_spec_valid(case: LayerCase) -> None:
    """The spec passes :func:`hybridzoo.spec.validate_spec` (names, symbol, an attrs options
    class whose defaults validate, callables, an API version this hybridzoo supports)."""
    try:
        validate_spec(case.spec)
    except HybridZooError as exc:
        raise CheckFailure(str(exc)) from exc


@_check("options_documented", "spec")
def check_options_documented(case: LayerCase) -> None:
    """Every option field is declared with :func:`hybridzoo.option`: a non-empty ``doc``, a
    validator, and ``examples`` that each validate (with the other fields at their defaults)."""
    spec = case.spec
    problems: list[str] = []
    for field in attrs.fields(spec.options):
        user = f"{spec.option_prefix}_{field.name}"
        doc = field.metadata.get("doc")
        if not isinstance(doc, str) or not doc.strip():
            problems.append(f"{user}: no doc (declare it with hybridzoo.option(default, doc=...))")
        if field.validator is None:
            problems.append(f"{user}: no validator (pass validator= to hybridzoo.option)")
        examples = field.metadata.get("examples", ())
        for example in examples:
            _, errors = make_options(spec, {field.name: example})
            if errors:
                problems.append(f"{user}: example {example!r} is invalid: {'; '.join(errors)}")
    if problems:
        raise CheckFailure(
            f"layer {spec.name!r} has {len(problems)} undocumented or invalid option "
            "declaration(s):\n  - " + "\n  - ".join(problems)
        )


@_check("unknown_options_rejected", "spec")
def check_unknown_options_rejected(case: LayerCase) -> None:
    """A misspelt option is an error, never ignored: the options record refuses an unknown
    keyword, and ``HybridConfig.create`` raises ``OptionError`` for ``<prefix>_<unknown>``."""
    spec = case.spec
    bogus = "no_such_option_zz"
    try:
        spec.options(**{bogus: 1})
    except TypeError:
        pass
    else:
        raise CheckFailure(
            f"{spec.options.__name__}({bogus}=1) was accepted: an options record must refuse "
            "unknown fields (use @attrs.frozen without **kwargs)"
        )
    registry = _private_registry(spec)
    try:
        HybridConfig.create(
            [spec.name],
            hidden_size=case.hidden_size,
            registry=registry,
            **case.flat_options(),
            **{f"{spec.option_prefix}_{bogus}": 1},
        )
    except OptionError as exc:
        if bogus not in str(exc):
            raise CheckFailure(f"the OptionError does not name the unknown option: {exc}") from exc
    else:
        raise CheckFailure(f"the unknown option {spec.option_prefix}_{bogus}=1 was accepted")


# -- contract 1: shapes, dtype, device, the block in a model -------------------------------------


@_check("shape", "1")
def check_shape(case: LayerCase) -> None:
    """Each body maps ``[B, L, H]`` to ``[B, L, H]`` with finite values, for the case's (B, L)
    and for B=1/L=1, B+1/L=2 and B=1/L+5 (a single position and odd lengths included)."""
    bodies = case.bodies()
    shapes = dict.fromkeys(
        [(case.batch, case.length), (1, 1), (case.batch + 1, 2), (1, case.length + 5)]
    )
    for i, body in enumerate(bodies):
        label = _label(body, i, len(bodies))
        for n, (batch, length) in enumerate(shapes):
            x = case.inputs(batch, length, offset=n)
            with torch.no_grad():
                y = _forward(body, x, f"{label} on B={batch}, L={length}")
            _finite(y, f"{label} on B={batch}, L={length}")


@_check("dtype_device", "1")
def check_dtype_device(case: LayerCase) -> None:
    """In float32 and float64, forward returns the input's dtype and device; a stateful layer's
    ``init_state`` puts its tensors on the module's device, floating ones in its dtype, and
    ``step``/``prefill`` return outputs of that dtype."""
    stateful = case.spec.capabilities.stateful
    for dtype in (torch.float32, torch.float64):
        bodies = case.bodies(dtype=dtype)
        x = case.inputs().to(dtype)
        for i, body in enumerate(bodies):
            label = f"{_label(body, i, len(bodies))} in {str(dtype).replace('torch.', '')}"
            with torch.no_grad():
                y = _forward(body, x, label)
                if y.dtype != dtype or y.device != x.device:
                    raise CheckFailure(
                        f"{label}: forward returned {y.dtype} on {y.device}, expected {dtype} "
                        f"on {x.device}"
                    )
                if not stateful:
                    continue
                state = body.init_state(case.batch)
                for j, t in enumerate(_state_tensors(state, f"{label}: init_state")):
                    if t.device != x.device:
                        raise CheckFailure(
                            f"{label}: init_state tensor {j} is on {t.device}, the module on "
                            f"{x.device}"
                        )
                    if t.is_floating_point() and t.dtype != dtype:
                        raise CheckFailure(
                            f"{label}: init_state tensor {j} {list(t.shape)} is {t.dtype}, the "
                            f"module {dtype}"
                        )
                y_t, _ = _step_pair(body.step(x[:, 0], state), f"{label}: step")
                y_p, _ = _step_pair(body.prefill(x, None), f"{label}: prefill")
                for what, out in (("step", y_t), ("prefill", y_p)):
                    out = _tensor(out, f"{label}: {what} output")
                    if out.dtype != dtype or out.device != x.device:
                        raise CheckFailure(
                            f"{label}: {what} returned {out.dtype} on {out.device}, expected "
                            f"{dtype} on {x.device}"
                        )


@_check("in_model", "1")
def check_in_model(case: LayerCase) -> None:
    """Two blocks of the layer in a :class:`HybridModel` (embed_dim = H+1, so with an input
    projection): ``output="sequence"`` gives ``[B, L, H]``, ``output="last"`` gives ``[B, H]``, and
    ``hybridzoo.param_count`` equals the built model's parameters."""
    registry = _private_registry(case.spec)
    x = case.randn(case.batch, case.length, case.hidden_size + 1)
    with use_registry(registry):
        for output, shape in (
            ("sequence", [case.batch, case.length, case.hidden_size]),
            ("last", [case.batch, case.hidden_size]),
        ):
            config = _model_config(case, registry, output=output)
            model = _build_model(config, case, registry)
            with torch.no_grad():
                y = model(x)
            if list(y.shape) != shape:
                raise CheckFailure(
                    f"a model of two {case.name!r} blocks with output={output!r} maps "
                    f"{list(x.shape)} to {list(y.shape)}, expected {shape}"
                )
            _finite(y, f"model output ({output})")
            counted, built = model_param_count(config), model.num_parameters()
            if counted != built:
                raise CheckFailure(
                    f"hybridzoo.param_count gives {counted} for a model of two {case.name!r} "
                    f"blocks, the built model has {built} parameters"
                )


# -- contract 2: parameter count -----------------------------------------------------------------


def _param_listing(bodies: list[nn.Module], limit: int = 12) -> str:
    rows = []
    for i, body in enumerate(bodies):
        for name, p in body.named_parameters():
            rows.append(f"body{i}.{name} {list(p.shape)} = {p.numel()}")
    more = f", ... ({len(rows) - limit} more)" if len(rows) > limit else ""
    return ", ".join(rows[:limit]) + more


@_check("param_count_exact", "2")
def check_param_count_exact(case: LayerCase) -> None:
    """``spec.param_count(options, H)`` equals the number of parameters of the bodies the factory
    builds (shared tensors once), at the case's H and at the next valid hidden size."""
    spec = case.spec
    multiple = _multiple(spec, case.options)
    for hidden in (case.hidden_size, case.hidden_size + multiple):
        formula = spec.param_count(case.options, hidden)
        if isinstance(formula, bool) or not isinstance(formula, int):
            raise CheckFailure(
                f"param_count(options, {hidden}) must return an int, got {formula!r} "
                f"({type(formula).__name__})"
            )
        bodies = case.bodies(hidden_size=hidden, dtype=torch.float32)
        built = sum(p.numel() for p in nn.ModuleList(bodies).parameters())
        if formula != built:
            raise CheckFailure(
                f"param_count(options, hidden_size={hidden}) = {formula}, but the built bodies "
                f"have {built} parameters (formula {'+' if formula > built else '-'}"
                f"{abs(formula - built)}); parameters: {_param_listing(bodies)}"
            )


# -- contract 3: causality -----------------------------------------------------------------------


@_check("causal", "3")
def check_causal(case: LayerCase) -> None:
    """The output at position t does not change when the inputs after t change (for t at the
    start, the middle and the end of the sequence; float64 tolerances)."""
    if not case.spec.capabilities.causal:
        raise CheckSkipped(f"layer {case.name!r} declares capabilities.causal=False")
    length = max(case.length, 2)
    bodies = case.bodies()
    x = case.inputs(length=length)
    cuts = sorted({0, length // 2, length - 2})
    for i, body in enumerate(bodies):
        label = _label(body, i, len(bodies))
        with torch.no_grad():
            y = _forward(body, x, label)
            for n, t in enumerate(cuts):
                x2 = x.clone()
                x2[:, t + 1 :] = 3.0 * case.inputs(length=length, offset=100 + n)[:, t + 1 :] + 1.0
                y2 = _forward(body, x2, label)
                assert_close(
                    y2[:, : t + 1],
                    y[:, : t + 1],
                    what=f"{label}: not causal: outputs at positions 0..{t} changed when only "
                    f"inputs after {t} changed",
                )


# -- contract 4: step mode -------------------------------------------------------------------------


@_check("step_equals_parallel", "4")
def check_step_equals_parallel(case: LayerCase) -> None:
    """For each body, ``init_state`` then ``step`` token by token equals ``forward`` (float64
    tolerances), steps leave the input unchanged; and a model of the layer stepped from
    ``init_state`` equals its ``forward(output="sequence")``."""
    _require_stateful(case)
    bodies = case.bodies()
    x = case.inputs()
    x_copy = x.clone()
    with torch.no_grad():
        for i, body in enumerate(bodies):
            label = _label(body, i, len(bodies))
            y = _forward(body, x, label)
            state = body.init_state(case.batch)
            stepped, _ = _run_steps(body, x, state, label)
            if not torch.equal(x, x_copy):
                raise CheckFailure(f"{label}: step modified its input x_t in place")
            assert_close(stepped, y, what=f"{label}: step outputs differ from forward")
    registry = _private_registry(case.spec)
    with use_registry(registry):
        model = _build_model(_model_config(case, registry), case, registry)
    xm = case.randn(case.batch, case.length, case.hidden_size + 1, offset=1)
    with torch.no_grad():
        y = model(xm)
        state = model.init_state(case.batch)
        outs = []
        for t in range(case.length):
            y_t, state = model.step(xm[:, t], state)
            outs.append(y_t)
    assert_close(
        torch.stack(outs, 1), y, what=f"a model of two {case.name!r} blocks: step != forward"
    )


@_check("prefill_then_step", "4")
def check_prefill_then_step(case: LayerCase) -> None:
    """For each body and prefix length p (1, L//2, L-1): ``prefill`` of the first p positions
    equals ``forward`` there, stepping on from its state equals ``forward`` on the rest, a second
    ``prefill`` from that state equals it too, and ``prefill(x, init_state(B))`` equals
    ``forward(x)`` (float64 tolerances)."""
    _require_stateful(case)
    length = max(case.length, 2)
    bodies = case.bodies()
    x = case.inputs(length=length)
    splits = sorted({1, length // 2, length - 1})
    with torch.no_grad():
        for i, body in enumerate(bodies):
            label = _label(body, i, len(bodies))
            y = _forward(body, x, label)
            y_full, _ = _step_pair(
                body.prefill(x, body.init_state(case.batch)), f"{label}: prefill"
            )
            assert_close(y_full, y, what=f"{label}: prefill(x, init_state(B)) != forward(x)")
            for p in splits:
                y_pre, state = _step_pair(body.prefill(x[:, :p]), f"{label}: prefill")
                assert_close(
                    y_pre, y[:, :p], what=f"{label}: prefill of the first {p} positions != forward"
                )
                stepped, _ = _run_steps(body, x[:, p:], state, label)
                assert_close(
                    stepped,
                    y[:, p:],
                    what=f"{label}: steps after a prefill of {p} positions != forward "
                    f"(positions {p}..{length - 1} shown as t=0..)",
                )
                _, state = body.prefill(x[:, :p])
                y_rest, _ = _step_pair(body.prefill(x[:, p:], state), f"{label}: prefill")
                assert_close(
                    y_rest,
                    y[:, p:],
                    what=f"{label}: prefill from the state after {p} positions != forward "
                    f"(positions {p}..{length - 1} shown as t=0..)",
                )


@_check("state_size_formula", "4")
def check_state_size_formula(case: LayerCase) -> None:
    """``spec.state_size(options, H)`` equals the elements per sequence of ``init_state``: the
    elements that grow with the batch (measured at B=1 and B=3); tensors shared across the batch
    (a position counter) are not counted. Skipped when the formula returns ``None`` for the
    case's options (a state that grows with the sequence)."""
    _require_stateful(case)
    if case.spec.state_size is None:
        raise CheckSkipped(f"layer {case.name!r} declares no state_size formula")
    formula = case.spec.state_size(case.options, case.hidden_size)
    if formula is None:
        raise CheckSkipped(
            f"state_size(options, {case.hidden_size}) is None for {case.options!r}: the state "
            "grows with the sequence"
        )
    if isinstance(formula, bool) or not isinstance(formula, int) or formula < 0:
        raise CheckFailure(
            f"state_size(options, {case.hidden_size}) must be an int >= 0, got {formula!r}"
        )
    bodies = case.bodies()
    counts = {}
    for batch in (1, 3):
        counts[batch] = sum(
            t.numel()
            for body in bodies
            for t in _state_tensors(body.init_state(batch), f"{type(body).__name__}.init_state")
        )
    per_sequence, rest = divmod(counts[3] - counts[1], 2)
    if rest or counts[1] - per_sequence < 0:
        raise CheckFailure(
            f"init_state holds {counts[1]} elements for B=1 and {counts[3]} for B=3: not "
            "linear in the batch size"
        )
    if per_sequence != formula:
        raise CheckFailure(
            f"state_size(options, {case.hidden_size}) = {formula}, but init_state holds "
            f"{per_sequence} elements per sequence (plus {counts[1] - per_sequence} shared)"
        )


# -- contract 5: batch rows, determinism, gradients ---------------------------------------------


@_check("batch_independent", "5")
def check_batch_independent(case: LayerCase) -> None:
    """Each row of a batch gives the same output as alone, and changing one row leaves the
    others unchanged (B = max(batch, 2); float64 tolerances)."""
    batch = max(case.batch, 2)
    bodies = case.bodies()
    x = case.inputs(batch=batch)
    with torch.no_grad():
        for i, body in enumerate(bodies):
            label = _label(body, i, len(bodies))
            y = _forward(body, x, label)
            for row in range(batch):
                alone = _forward(body, x[row : row + 1], label)
                assert_close(
                    alone,
                    y[row : row + 1],
                    what=f"{label}: row {row} alone != row {row} in a batch",
                )
            x2 = x.clone()
            x2[0] = case.inputs(batch=1, offset=5)[0]
            y2 = _forward(body, x2, label)
            assert_close(
                y2[1:],
                y[1:],
                what=f"{label}: rows 1.. changed when only row 0 changed (shown as b=0..)",
            )


@_check("eval_deterministic", "5")
def check_eval_deterministic(case: LayerCase) -> None:
    """In eval mode two forward calls on the same input give identical outputs (exactly), and
    forward does not modify its input."""
    bodies = case.bodies()
    x = case.inputs()
    x_copy = x.clone()
    with torch.no_grad():
        for i, body in enumerate(bodies):
            label = _label(body, i, len(bodies))
            y1 = _forward(body, x, label)
            if not torch.equal(x, x_copy):
                raise CheckFailure(f"{label}: forward modified its input in place")
            y2 = _forward(body, x, label)
            if not torch.equal(y1, y2):
                diff = (y1 - y2).abs().max().item()
                raise CheckFailure(
                    f"{label}: two eval-mode forwards on one input differ (max |diff| {diff:.3g})"
                )


def _gradients(
    body: nn.Module, x: torch.Tensor, weight: torch.Tensor
) -> tuple[dict[str, Any], Any]:
    body.zero_grad(set_to_none=True)
    x = x.detach().clone().requires_grad_(True)
    y = body(x)
    (y * weight).sum().backward()
    return {n: p.grad for n, p in body.named_parameters()}, x.grad


@_check("gradients_reach_parameters", "5")
def check_gradients_reach_parameters(case: LayerCase) -> None:
    """In train mode (L >= 8), a random projection of the output back-propagates finite gradients
    to the input and to every parameter, none of them identically zero. A parameter with an all-zero
    gradient at initialisation (a zero-initialised projection hides the path) is checked again
    after jittering every parameter by 0.02·N(0, 1); it fails only if still zero. Zero means
    exactly zero: a gradient at the rounding-noise level passes (a real gradient can be as small
    as 1e-14 of the largest, e.g. Mamba's ``A_log`` at tiny step sizes)."""
    # short sequences hide parameters: at L=1 no decay or attention score matters, RWKV's decay
    # first acts at L=3, a convolution tap of lag k at L=k+1
    length = max(case.length, GRADIENT_MIN_LENGTH)
    bodies = case.bodies()
    x = case.inputs(length=length)
    weight = case.inputs(length=length, offset=3)
    for i, body in enumerate(bodies):
        label = _label(body, i, len(bodies))
        body.train()
        grads, x_grad = _gradients(body, x, weight)
        missing = [n for n, g in grads.items() if g is None]
        if missing:
            raise CheckFailure(f"{label}: no gradient reaches {', '.join(missing)} (unused?)")
        for name, g in [*grads.items(), ("<input>", x_grad)]:
            if g is None or not torch.isfinite(g).all():
                raise CheckFailure(f"{label}: the gradient of {name} is missing or not finite")
        zero = [n for n, g in grads.items() if not g.any()]
        if zero:
            with _seeded(case.seed + 1), torch.no_grad():
                for p in body.parameters():
                    p.add_(0.02 * torch.randn(p.shape, dtype=torch.float64).to(p))
            grads, _ = _gradients(body, x, weight)
            still = [n for n in zero if grads[n] is None or not grads[n].any()]
            if still:
                raise CheckFailure(
                    f"{label}: the gradient of {', '.join(still)} is identically zero (even "
                    "after jittering the parameters): these parameters do not affect the output"
                )


# -- contract 6: the reference --------------------------------------------------------------------


@_check("reference_matches", "6")
def check_reference_matches(case: LayerCase) -> None:
    """``spec.reference(first_body, x)`` (the slow time-step evaluation) equals the first body's
    forward in float64 within ``atol=1e-8, rtol=1e-6``."""
    if case.spec.reference is None:
        raise CheckSkipped(f"layer {case.name!r} declares no reference (spec.reference is None)")
    body = case.bodies()[0]
    x = case.inputs()
    with torch.no_grad():
        y = _forward(body, x, type(body).__name__)
        y_ref = _tensor(case.spec.reference(body, x), "the reference's output")
    assert_close(y, y_ref, what=f"{type(body).__name__}: forward != spec.reference")


# -- contract 7: options round trip ---------------------------------------------------------------


@_check("config_round_trip", "7")
def check_config_round_trip(case: LayerCase) -> None:
    """A config holding the layer's options survives ``to_dict`` → JSON → ``from_dict`` (equal
    config and options record), and the model rebuilt from it has the same parameter names,
    shapes and count, and with the first model's weights the same outputs (exactly)."""
    registry = _private_registry(case.spec)
    with use_registry(registry):
        config = _model_config(case, registry)
        data = config.to_dict()
        try:
            text = json.dumps(data)
        except (TypeError, ValueError) as exc:
            raise CheckFailure(f"config.to_dict() is not JSON-serialisable: {exc}") from exc
        try:
            again = HybridConfig.from_dict(json.loads(text), registry=registry)
        except HybridZooError as exc:
            raise CheckFailure(f"from_dict(to_dict()) raised: {exc}") from exc
        if again.layer_options[case.name] != case.options:
            raise CheckFailure(
                f"the options record changed in the round trip: {case.options!r} became "
                f"{again.layer_options[case.name]!r}"
            )
        if again != config:
            raise CheckFailure(f"the config changed in the round trip: {config!r} became {again!r}")
        first = _build_model(config, case, registry)
        second = _build_model(again, case, registry)
    shapes1 = {k: tuple(v.shape) for k, v in first.state_dict().items()}
    shapes2 = {k: tuple(v.shape) for k, v in second.state_dict().items()}
    if shapes1 != shapes2:
        diff = sorted(set(shapes1.items()) ^ set(shapes2.items()))[:6]
        raise CheckFailure(f"the rebuilt model has other parameters/buffers: {diff}")
    second.load_state_dict(first.state_dict())
    x = case.randn(case.batch, case.length, case.hidden_size + 1, offset=2)
    with torch.no_grad():
        if not torch.equal(first(x), second(x)):
            raise CheckFailure("the rebuilt model with the same weights gives other outputs")


# -- running -----------------------------------------------------------------------------------


def _select(checks: Iterable[str] | None) -> list[Check]:
    if checks is None:
        return list(CHECKS.values())
    if isinstance(checks, str):
        checks = [checks]
    selected = []
    for name in checks:
        if name not in CHECKS:
            hint = close_matches(str(name), CHECKS)
            tip = f" Did you mean {' or '.join(map(repr, hint))}?" if hint else ""
            raise ValueError(f"unknown check {name!r}.{tip} Checks: {', '.join(CHECKS)}")
        selected.append(CHECKS[name])
    return selected


def _describe_error(exc: BaseException) -> str:
    if isinstance(exc, CheckFailure):
        return str(exc)
    # the innermost frame outside torch: usually the layer's own line
    torch_dir = os.path.dirname(torch.__file__)
    tb = exc.__traceback__
    where = ""
    while tb is not None:
        filename = tb.tb_frame.f_code.co_filename
        if not filename.startswith(torch_dir):
            where = f" (at {filename}:{tb.tb_lineno})"
        tb = tb.tb_next
    return f"raised {type(exc).__name__}: {exc}{where}"


def run_checks(
    spec_or_name: LayerSpec | str,
    *,
    options: Any = None,
    hidden_size: int | None = None,
    checks: Iterable[str] | None = None,
    batch: int = DEFAULT_BATCH,
    length: int = DEFAULT_LENGTH,
    dtype: torch.dtype = torch.float64,
    seed: int = 0,
    device: str | torch.device = "cpu",
    registry: Registry | None = None,
) -> list[CheckResult]:
    """Run checks on one layer and return one :class:`CheckResult` per check, in order.

    Never raises for a broken layer: an exception inside a check (a ``RuntimeError`` from a
    shape mismatch, ...) is a failure whose reason names it. Bad arguments (an unknown check or
    layer, invalid options) raise.

    Args:
        spec_or_name: a :class:`hybridzoo.LayerSpec`, or the name/symbol of a registered layer.
        options: ``None`` (defaults), an options record, or a mapping of option names to values.
        hidden_size: default: 16 rounded up to the layer's ``hidden_size_multiple``.
        checks: names of :data:`CHECKS` to run (default: all).
        batch, length, dtype, seed, device: see :class:`LayerCase`.
        registry: where a name is looked up (default: the default registry).
    """
    selected = _select(checks)
    case = layer_case(
        spec_or_name,
        options=options,
        hidden_size=hidden_size,
        batch=batch,
        length=length,
        dtype=dtype,
        seed=seed,
        device=device,
        registry=registry,
    )
    return [_run_one(check, case) for check in selected]


def _run_one(check: Check, case: LayerCase) -> CheckResult:
    try:
        check(case)
    except CheckSkipped as exc:
        return CheckResult(case.name, check.name, "skipped", exc.reason)
    except Exception as exc:
        return CheckResult(case.name, check.name, "failed", _describe_error(exc))
    return CheckResult(case.name, check.name, "passed")


def assert_conforms(spec_or_name: LayerSpec | str, **kwargs: Any) -> list[CheckResult]:
    """Run :func:`run_checks` (same arguments) and raise one ``AssertionError`` listing every
    failed check; returns the results (passes and skips) when none failed."""
    results = run_checks(spec_or_name, **kwargs)
    failed = [r for r in results if r.failed]
    if failed:
        name = results[0].layer
        lines = "\n".join(f"  - {r.check}: {r.reason}" for r in failed)
        raise AssertionError(
            f"layer {name!r} fails {len(failed)} of {len(results)} conformance checks:\n{lines}"
        )
    return results

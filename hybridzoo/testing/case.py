"""Case building: the :class:`LayerCase` a check runs on, and what a check builds from it.

A case is one configuration of one layer: a spec, its options record, a hidden size, a batch
size, a length, a dtype, a seed and a device. :func:`layer_case` makes one with every argument
validated; the checks build bodies (and small models) from it, seeded, so that an outcome is
reproducible and the caller's random state is left alone.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Mapping
from typing import Any

import attrs
import torch
from torch import nn

from hybridzoo.config import HybridConfig
from hybridzoo.errors import HybridZooError, OptionError
from hybridzoo.model import HybridModel, build_bodies
from hybridzoo.options import make_options
from hybridzoo.registry import Registry, get_registry, use_registry
from hybridzoo.spec import LayerSpec
from hybridzoo.testing.results import CheckFailure
from hybridzoo.validate import at_least

__all__ = [
    "DEFAULT_BATCH",
    "DEFAULT_HIDDEN_TARGET",
    "DEFAULT_LENGTH",
    "LayerCase",
    "default_hidden_size",
    "layer_case",
    "resolve_options",
    "resolve_spec",
]

# pytest hides the kit's own frames from tracebacks: the author sees the failure first
__tracebackhide__ = True

#: Default sizes of a case: small, so the whole kit runs on one layer in a couple of seconds.
DEFAULT_BATCH = 2
DEFAULT_LENGTH = 11
#: The default hidden size is the smallest multiple of the layer's ``hidden_size_multiple``
#: that is at least this.
DEFAULT_HIDDEN_TARGET = 16


def resolve_spec(spec_or_name: LayerSpec | str, registry: Registry | None = None) -> LayerSpec:
    """A spec given as itself, by name or symbol in ``registry`` (default: the default one), or
    as a factory decorated with :func:`hybridzoo.layer` (its ``spec`` attribute)."""
    if isinstance(spec_or_name, LayerSpec):
        return spec_or_name
    if isinstance(getattr(spec_or_name, "spec", None), LayerSpec):
        return spec_or_name.spec  # type: ignore[union-attr]
    if isinstance(spec_or_name, str):
        return (registry or get_registry()).resolve(spec_or_name)
    raise TypeError(
        f"expected a hybridzoo.LayerSpec or a layer name, got {type(spec_or_name).__name__}: "
        f"{spec_or_name!r:.80}"
    )


def resolve_options(spec: LayerSpec, options: Any = None) -> Any:
    """``spec``'s options record from ``None`` (defaults), a record, or a mapping.

    A mapping may use field names (``kernel_size``) or user option names
    (``conv_kernel_size``). Invalid values raise :class:`hybridzoo.OptionError`.
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


def hidden_multiple(spec: LayerSpec, options: Any) -> int:
    """``spec.hidden_size_multiple(options)`` (1 when the spec declares none), checked."""
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
    multiple = hidden_multiple(spec, options)
    return multiple * max(1, math.ceil(target / multiple))


def check_device(device: str | torch.device) -> str:
    """``device`` as a string, if torch knows it and it is usable here; else ``ValueError``."""
    try:
        torch.empty(0, device=device)
    except (AssertionError, RuntimeError, TypeError, ValueError) as exc:  # torch raises all
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ValueError(
            f"device {str(device)!r} cannot be used here ({first}); valid devices look like "
            "'cpu', 'cuda', 'cuda:1' or 'mps', and must be available on this machine"
        ) from None
    return str(device)


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
            f"batch={self.batch}, length={self.length}, {dtype_name(self.dtype)}, "
            f"seed={self.seed}, device={self.device}"
        )

    def bodies(
        self, *, dtype: torch.dtype | None = None, hidden_size: int | None = None
    ) -> list[nn.Module]:
        """Build the bodies (seeded), move them to the case's device and dtype, eval mode."""
        with seeded(self.seed):
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
        batch, length, dtype, seed, device: see :class:`LayerCase`; a device that torch does not
            know, or that this machine lacks, is a ``ValueError``.
        registry: where names are looked up (default: the default registry).
    """
    spec = resolve_spec(spec_or_name, registry)
    record = resolve_options(spec, options)
    multiple = hidden_multiple(spec, record)
    if hidden_size is None:
        hidden_size = default_hidden_size(spec, record)
    hidden_size = at_least(1).check("hidden_size", hidden_size)
    if hidden_size % multiple:
        raise ValueError(
            f"hidden_size={hidden_size} is not a multiple of {multiple}, which layer "
            f"{spec.name!r} requires with {record!r}"
        )
    batch = at_least(1).check("batch", batch)
    length = at_least(1).check("length", length)
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise TypeError(f"dtype must be a floating torch.dtype, got {dtype!r}")
    seed = at_least(0).check("seed", seed)
    return LayerCase(spec, record, hidden_size, batch, length, dtype, seed, check_device(device))


def dtype_name(dtype: torch.dtype) -> str:
    """``torch.float64`` → ``"float64"``."""
    return str(dtype).replace("torch.", "")


@contextlib.contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Seed torch inside the block only (the caller's random state is restored)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


@contextlib.contextmanager
def one_thread(device: str) -> Iterator[None]:
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


# -- small models of the case's layer ----------------------------------------------------------


def private_registry(spec: LayerSpec) -> Registry:
    """A registry holding ``spec`` alone (no entry points), for the model-level checks."""
    registry = Registry(autoload=False, strict=True, disabled=())
    try:
        registry.register(spec)
    except HybridZooError as exc:
        raise CheckFailure(f"the spec cannot be registered: {exc}") from exc
    return registry


def model_config(case: LayerCase, registry: Registry, **model: Any) -> HybridConfig:
    """A config of two blocks of the case's layer, ``embed_dim = H + 1`` (so with an input
    projection), no dropout, ``output="sequence"`` unless ``model`` says otherwise."""
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


def build_model(config: HybridConfig, case: LayerCase, registry: Registry) -> HybridModel:
    """The model of ``config`` (seeded), on the case's device and dtype, eval mode."""
    with seeded(case.seed):
        model = HybridModel(config, registry=registry)
    return model.to(device=case.device, dtype=case.dtype).eval()


def case_model(case: LayerCase, **model: Any) -> HybridModel:
    """The model of :func:`model_config` (``model`` overriding its settings), built in a
    private registry holding the case's layer alone."""
    registry = private_registry(case.spec)
    with use_registry(registry):
        return build_model(model_config(case, registry, **model), case, registry)

"""The cost card of a pattern, from the plugins' formulas, without building anything.

Per position (and per shared layer) and in total: parameters (exact; and those one token uses,
for a mixture of experts), forward FLOPs per token at a sequence length (the products with
weights, and the mixer's own work as a function of the length and the window: see
:mod:`hybridzoo.flops`), training FLOPs (3× forward), the bytes of the step-mode state of one
sequence and of a key/value cache per cached token, for any dtype.

Conventions: FLOPs count two per multiply-add; norms, residual additions, activations and
softmaxes are not counted; a shared layer applied ``k`` times costs ``k`` applications (its
parameters count once, as in :func:`hybridzoo.param_count`, and it holds ``k`` states). The
model's input projection (``embed_dim != hidden_size``) is a row of its own; a language model's
embedding and head are the caller's (the arena adds its head). A layer that declares no FLOPs
formula is reported as unknown (``None`` and listed in :attr:`CostCard.unknown`), never as zero.

    >>> card = hybridzoo.cost("C C P", seq_len=1024, hidden_size=64)  # doctest: +SKIP
    >>> card.flops_per_token, card.state_bytes  # doctest: +SKIP
"""

from __future__ import annotations

from typing import Any

import attrs

from hybridzoo.counting import _breakdown
from hybridzoo.errors import OptionError
from hybridzoo.flops import LayerFlops, linear_flops
from hybridzoo.model_options import with_model_options
from hybridzoo.plugin_calls import call_formula, plugin_call, plugin_error
from hybridzoo.registry import Registry, get_registry
from hybridzoo.validate import at_least

__all__ = ["CostCard", "PositionCost", "cost", "dtype_size"]

#: Bytes per element of the dtypes a cost can be asked for (a ``torch.dtype`` works as well).
DTYPE_SIZES = {
    "float64": 8,
    "double": 8,
    "float32": 4,
    "float": 4,
    "tf32": 4,
    "bfloat16": 2,
    "bf16": 2,
    "float16": 2,
    "half": 2,
    "fp16": 2,
    "float8_e4m3fn": 1,
    "float8_e5m2": 1,
    "fp8": 1,
}


def dtype_size(dtype: Any) -> tuple[str, int]:
    """``(name, bytes per element)`` of a dtype name (``"bfloat16"``) or a ``torch.dtype``."""
    if hasattr(dtype, "itemsize") and not isinstance(dtype, str):
        return str(dtype).removeprefix("torch."), int(dtype.itemsize)
    name = str(dtype).removeprefix("torch.").lower()
    if name not in DTYPE_SIZES:
        from hybridzoo.errors import did_you_mean

        raise OptionError(
            f"unknown dtype {dtype!r}.{did_you_mean(name, DTYPE_SIZES)} Known: "
            f"{', '.join(DTYPE_SIZES)} (or a torch.dtype)"
        )
    return name, DTYPE_SIZES[name]


@attrs.frozen
class PositionCost:
    """One row of a :class:`CostCard`: a pattern position, a shared layer (``shared``, every
    application together) or the input projection. FLOPs are forward, on one sequence of
    ``seq_len`` positions; ``None`` where the layer declares no formula."""

    position: int | None  # 1-based pattern position; None for a shared layer or a model row
    layer: str
    symbol: str
    params: int
    active_params: int
    matmul: int | None
    mixer: int | None
    state_bytes: int | None  # step state of one sequence after seq_len positions
    kv_bytes_per_token: int  # what a key/value cache holds per cached position (0: none)
    seq_len: int
    shared: bool = False
    applications: int = 1

    @property
    def flops(self) -> int | None:
        """Forward FLOPs on one sequence (``matmul + mixer``)."""
        return None if self.matmul is None or self.mixer is None else self.matmul + self.mixer

    @property
    def flops_per_token(self) -> float | None:
        """Forward FLOPs per position at ``seq_len``."""
        return None if self.flops is None else self.flops / self.seq_len

    @property
    def train_flops_per_token(self) -> float | None:
        """Forward and backward: three forwards."""
        return None if self.flops is None else 3 * self.flops / self.seq_len


def _sum(values: list[Any]) -> Any:
    return None if any(v is None for v in values) else sum(values)


@attrs.frozen
class CostCard:
    """What a pattern costs: :attr:`rows` and the totals (FLOPs per token at :attr:`seq_len`)."""

    rows: tuple[PositionCost, ...]
    seq_len: int
    dtype: str
    itemsize: int
    params: int
    active_params: int
    unknown: tuple[str, ...]

    def _total(self, attr: str) -> Any:
        return _sum([getattr(r, attr) for r in self.rows])

    def _per_token(self, attr: str) -> float | None:
        total = self._total(attr)
        return None if total is None else total / self.seq_len

    @property
    def matmul_flops_per_token(self) -> float | None:
        """Products with weights, per token (forward)."""
        return self._per_token("matmul")

    @property
    def mixer_flops_per_token(self) -> float | None:
        """The mixers' own work, per token (forward)."""
        return self._per_token("mixer")

    @property
    def flops_per_token(self) -> float | None:
        """Forward FLOPs per token (``None`` if a layer's are unknown)."""
        return self._per_token("flops")

    @property
    def train_flops_per_token(self) -> float | None:
        """Training FLOPs per token: three forwards."""
        forward = self.flops_per_token
        return None if forward is None else 3 * forward

    @property
    def state_bytes(self) -> int | None:
        """Step-mode state of one sequence after :attr:`seq_len` positions, in bytes."""
        return self._total("state_bytes")

    @property
    def kv_bytes_per_token(self) -> int:
        """Bytes the key/value caches hold per cached position, all layers together."""
        return sum(r.kv_bytes_per_token * r.applications for r in self.rows)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict: the rows and the totals."""
        totals = ("matmul_flops_per_token", "mixer_flops_per_token", "flops_per_token")
        totals += ("train_flops_per_token", "state_bytes", "kv_bytes_per_token")
        out: dict[str, Any] = {
            "seq_len": self.seq_len,
            "dtype": self.dtype,
            "params": self.params,
            "active_params": self.active_params,
        }
        out.update({name: getattr(self, name) for name in totals})
        out["unknown"] = list(self.unknown)
        out["rows"] = [{**attrs.asdict(r), "flops_per_token": r.flops_per_token} for r in self.rows]
        return out


def _layer_flops(spec: Any, record: Any, hidden: int, seq_len: int, registry: Registry) -> Any:
    if spec.flops is None:
        return None
    result = plugin_call(spec, "flops", spec.flops, record, hidden, seq_len, registry=registry)
    if not isinstance(result, LayerFlops):
        raise plugin_error(
            spec,
            f"its flops formula must return a hybridzoo.plugin.LayerFlops, got {result!r:.80}",
            registry,
        )
    return result


def _state_bytes(
    spec: Any, record: Any, hidden: int, itemsize: int, seq_len: int, registry: Registry
) -> tuple[int | None, int]:
    """``(state bytes after seq_len positions, cache bytes per cached position)``."""
    kv = 0
    if spec.kv_cache_size is not None:
        kv = call_formula(spec, "kv_cache_size", record, hidden, registry=registry) * itemsize
    numel = plugin_call(spec, "state_size", spec.step_state_size, record, hidden, registry=registry)
    if spec.state_bytes is not None:
        fixed = call_formula(spec, "state_bytes", record, hidden, itemsize, registry=registry)
    else:
        fixed = None if numel is None else numel * itemsize
    if numel is None:  # a state that grows (a cache without a window), or no formula
        if not kv:
            return None, kv
        return (fixed or 0) + kv * seq_len, kv
    return fixed, kv


@with_model_options
def cost(
    pattern: Any,
    *,
    seq_len: int = 2048,
    dtype: Any = "float32",
    dialect: str = "native",
    model_type: str | None = None,
    registry: Registry | None = None,
    **options: Any,
) -> CostCard:
    """The :class:`CostCard` of ``build(pattern, **options)``, from formulas (nothing built).

    Args:
        pattern: any pattern form :func:`hybridzoo.build` takes (or a ``HybridConfig``).
        seq_len: the sequence length the FLOPs are counted at (attention's grow with it) and
            the positions a growing cache holds.
        dtype: the dtype of the weights and states (``"bfloat16"``, a ``torch.dtype``).
        dialect, model_type: the notation of ``pattern`` (see :func:`hybridzoo.parse_pattern`).
        **options: the model and layer options, as :func:`hybridzoo.build` takes them.
    """
    from hybridzoo.config import HybridConfig, config_of
    from hybridzoo.dialects import coerce_pattern

    registry = registry or get_registry()
    seq_len = at_least(1).check("seq_len", seq_len)
    dtype_name, itemsize = dtype_size(dtype)
    if not isinstance(pattern, HybridConfig):
        pattern = coerce_pattern(pattern, dialect, model_type=model_type, registry=registry)
    config = config_of(pattern, options, registry)
    H = config.hidden_size
    params = {
        (r.position, r.name): r.params for r in _breakdown(config, registry, {}, active=False)
    }
    active = {(r.position, r.name): r.params for r in _breakdown(config, registry, {}, active=True)}
    uses: dict[str, int] = {}
    for name, index in config.schedule():
        if index is None:
            uses[name] = uses.get(name, 0) + 1
    rows: list[PositionCost] = []
    if config.embed_dim != H:
        projection = linear_flops(config.embed_dim, H) * seq_len
        count = params[(None, "input_proj")]
        rows.append(
            PositionCost(None, "input_proj", "", count, count, projection, 0, 0, 0, seq_len)
        )
    entries = [(i, name) for i, name in enumerate(config.pattern)]
    entries += [(None, name) for name, _ in config.shared_layers]
    unknown: list[str] = []
    for i, name in entries:
        spec = registry.get(name)
        record = config.options_of(name, i)
        times = 1 if i is not None else uses[name]
        flops = _layer_flops(spec, record, H, seq_len, registry)
        if flops is None and name not in unknown:
            unknown.append(name)
        state, kv = _state_bytes(spec, record, H, itemsize, seq_len, registry)
        position = None if i is None else i + 1
        rows.append(
            PositionCost(
                position,
                name,
                spec.symbol,
                params[(position, name)],
                active[(position, name)],
                None if flops is None else flops.matmul * times,
                None if flops is None else flops.mixer * times,
                None if state is None else state * times,
                kv,
                seq_len,
                shared=i is None,
                applications=times,
            )
        )
    norm = params[(None, "final_norm")]
    rows.append(PositionCost(None, "final_norm", "", norm, norm, 0, 0, 0, 0, seq_len))
    return CostCard(
        rows=tuple(rows),
        seq_len=seq_len,
        dtype=dtype_name,
        itemsize=itemsize,
        params=sum(params.values()),
        active_params=sum(active.values()),
        unknown=tuple(unknown),
    )

"""``HybridConfig``: everything needed to rebuild a model, validated, frozen, JSON round trip.

:meth:`HybridConfig.create` is where a user's call is checked: the pattern is resolved against
the registry, the flat options are routed to the plugins (:mod:`hybridzoo.options`), the shared
layers and the model options are validated, and every problem is reported with what is valid.
Creating a config needs no torch.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import attrs

from hybridzoo.errors import ConfigError, OptionError, did_you_mean
from hybridzoo.options import split_options
from hybridzoo.patterns import PatternLike, resolve_pattern, resolve_shared_layers
from hybridzoo.registry import Registry, get_registry
from hybridzoo.spec import LayerSpec

__all__ = ["CONFIG_VERSION", "MODEL_OPTIONS", "HybridConfig"]

CONFIG_VERSION = 1
OUTPUTS = ("last", "sequence")
POSITIONAL_ENCODINGS = (None, "sinusoidal")

#: Model-level keyword arguments (everything else is a ``<prefix>_<field>`` layer option).
MODEL_OPTIONS = (
    "embed_dim",
    "hidden_size",
    "dropout",
    "shared_layers",
    "output",
    "positional_encoding",
    "norm_eps",
)


def _freeze_options(value: Mapping[str, Any]) -> Mapping[str, Any]:
    return dict(value)


@attrs.frozen
class HybridConfig:
    """A validated model configuration. Build one with :meth:`create` (or :meth:`from_dict`).

    Attributes:
        pattern: layer names, one per block.
        embed_dim: width of the input ``[B, L, embed_dim]``.
        hidden_size: width of the residual stream.
        dropout: dropout probability on each block's output (before the residual add).
        shared_layers: ``((layer, (pos, ...)), ...)``: one block of that layer type, applied after
            each listed 1-based position, one set of weights.
        output: ``"last"`` (``[B, hidden]``, the last position) or ``"sequence"``.
        positional_encoding: ``None`` or ``"sinusoidal"`` (added after the input projection).
        norm_eps: epsilon of every LayerNorm.
        layer_options: ``{layer name: options record}`` for every layer type used.
    """

    pattern: tuple[str, ...]
    embed_dim: int
    hidden_size: int = 256
    dropout: float = 0.1
    shared_layers: tuple[tuple[str, tuple[int, ...]], ...] = ()
    output: Literal["last", "sequence"] = "last"
    positional_encoding: Literal["sinusoidal"] | None = None
    norm_eps: float = 1e-5
    layer_options: Mapping[str, Any] = attrs.field(factory=dict, converter=_freeze_options)

    # -- creation ----------------------------------------------------------------------------

    @classmethod
    def create(
        cls,
        pattern: PatternLike,
        *,
        embed_dim: int | None = None,
        hidden_size: int = 256,
        dropout: float = 0.1,
        shared_layers: Mapping[str, Sequence[int]] | None = None,
        output: str = "last",
        positional_encoding: str | None = None,
        norm_eps: float = 1e-5,
        registry: Registry | None = None,
        **layer_options: Any,
    ) -> HybridConfig:
        """Validate a user's call and return the config (all problems reported together).

        ``embed_dim=None`` means ``embed_dim = hidden_size`` (no input projection).
        """
        registry = registry or get_registry()
        names = resolve_pattern(pattern, registry=registry)
        problems: list[str] = []

        def check_int(name: str, value: Any, minimum: int) -> None:
            if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
                problems.append(f"{name} must be an integer >= {minimum}, got {value!r}")

        if embed_dim is None:
            embed_dim = hidden_size
        check_int("embed_dim", embed_dim, 1)
        check_int("hidden_size", hidden_size, 1)
        if (
            isinstance(dropout, bool)
            or not isinstance(dropout, int | float)
            or not 0.0 <= dropout < 1.0
            or math.isnan(dropout)
        ):
            problems.append(f"dropout must be a number in [0, 1), got {dropout!r}")
        if output not in OUTPUTS:
            problems.append(
                f"output must be one of {', '.join(map(repr, OUTPUTS))}, got {output!r}"
                + did_you_mean(str(output), OUTPUTS)
            )
        if positional_encoding not in POSITIONAL_ENCODINGS:
            problems.append(
                "positional_encoding must be None or 'sinusoidal', got "
                f"{positional_encoding!r}" + did_you_mean(str(positional_encoding), ["sinusoidal"])
            )
        if not isinstance(norm_eps, int | float) or not norm_eps > 0:
            problems.append(f"norm_eps must be a positive number, got {norm_eps!r}")

        shared, shared_problems = resolve_shared_layers(
            shared_layers, len(names), registry=registry
        )
        problems.extend(shared_problems)
        shared_specs = [registry.get(name) for name, _ in shared]
        used = [registry.get(n) for n in dict.fromkeys(names)] + shared_specs
        records: dict[str, Any] = {}
        try:
            records = split_options(layer_options, used, registry, extra_valid=MODEL_OPTIONS)
        except OptionError as exc:
            problems.extend(exc.problems)

        if not problems:
            for spec in dict.fromkeys(used):
                if spec.hidden_size_multiple is not None:
                    multiple = spec.hidden_size_multiple(records[spec.name])
                    if hidden_size % multiple:
                        problems.append(
                            f"hidden_size={hidden_size} must be a multiple of {multiple} for layer "
                            f"{spec.name!r} (set by its options, e.g. a head size); nearest valid: "
                            f"{max(multiple, hidden_size // multiple * multiple)}"
                        )
        if problems:
            raise OptionError(problems)
        return cls(
            pattern=tuple(names),
            embed_dim=embed_dim,
            hidden_size=hidden_size,
            dropout=float(dropout),
            shared_layers=shared,
            output=output,  # type: ignore[arg-type]
            positional_encoding=positional_encoding,  # type: ignore[arg-type]
            norm_eps=float(norm_eps),
            layer_options=records,
        )

    # -- views ---------------------------------------------------------------------------------

    def specs(self, registry: Registry | None = None) -> dict[str, LayerSpec]:
        """``{layer name: spec}`` for every layer type of the model."""
        registry = registry or get_registry()
        names = [*self.pattern, *(n for n, _ in self.shared_layers)]
        return {n: registry.get(n) for n in dict.fromkeys(names)}

    def flat_options(self, registry: Registry | None = None) -> dict[str, Any]:
        """The layer options as the user spells them (``conv_kernel_size``), non-defaults."""
        registry = registry or get_registry()
        out: dict[str, Any] = {}
        for name, record in self.layer_options.items():
            spec = registry.get(name)
            defaults = attrs.asdict(spec.options())
            for key, value in attrs.asdict(record).items():
                if defaults.get(key) != value:
                    out[f"{spec.option_prefix}_{key}"] = value
        return out

    def schedule(self) -> list[tuple[str, int | None]]:
        """The order blocks run in: ``("block", i)`` for pattern entries, ``("shared", None)``
        with the layer name for shared blocks, e.g. ``[(mamba, 0), (attention, None), ...]``."""
        after: dict[int, list[str]] = {}
        for layer, positions in self.shared_layers:
            for p in positions:
                after.setdefault(p, []).append(layer)
        order: list[tuple[str, int | None]] = []
        for i, name in enumerate(self.pattern):
            order.append((name, i))
            order.extend((layer, None) for layer in after.get(i + 1, []))
        return order

    def replace(self, **changes: Any) -> HybridConfig:
        """A copy with model options changed (re-validated through :meth:`create`)."""
        data = self.to_dict()
        data.update({k: v for k, v in changes.items() if k in MODEL_OPTIONS})
        layer = {k: v for k, v in changes.items() if k not in MODEL_OPTIONS and k != "pattern"}
        return HybridConfig.create(
            list(changes.get("pattern", self.pattern)),
            embed_dim=data["embed_dim"],
            hidden_size=data["hidden_size"],
            dropout=data["dropout"],
            shared_layers=dict(data["shared_layers"]) or None,
            output=data["output"],
            positional_encoding=data["positional_encoding"],
            norm_eps=data["norm_eps"],
            **{**self.flat_options(), **layer},
        )

    # -- serialisation ---------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (every layer option spelt out, defaults included)."""
        return {
            "config_version": CONFIG_VERSION,
            "pattern": list(self.pattern),
            "embed_dim": self.embed_dim,
            "hidden_size": self.hidden_size,
            "dropout": self.dropout,
            "shared_layers": {k: list(v) for k, v in self.shared_layers},
            "output": self.output,
            "positional_encoding": self.positional_encoding,
            "norm_eps": self.norm_eps,
            "layer_options": {
                name: attrs.asdict(record) for name, record in self.layer_options.items()
            },
        }

    @classmethod
    def from_dict(
        cls, data: Mapping[str, Any], *, registry: Registry | None = None
    ) -> HybridConfig:
        """Rebuild (and re-validate) a config from :meth:`to_dict`'s output."""
        if not isinstance(data, Mapping):
            raise ConfigError(f"a config must be a mapping, got {type(data).__name__}")
        version = data.get("config_version", CONFIG_VERSION)
        if version != CONFIG_VERSION:
            raise ConfigError(
                f"config_version {version!r} is not supported (this hybridzoo reads "
                f"{CONFIG_VERSION})"
            )
        known = {"config_version", "pattern", "layer_options", *MODEL_OPTIONS}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(
                f"unknown config keys {unknown}{did_you_mean(unknown[0], known)}; "
                f"valid: {', '.join(sorted(known))}"
            )
        if "pattern" not in data or "embed_dim" not in data:
            raise ConfigError("a config needs at least 'pattern' and 'embed_dim'")
        registry = registry or get_registry()
        flat: dict[str, Any] = {}
        for name, values in (data.get("layer_options") or {}).items():
            spec = registry.get(name)
            for key, value in values.items():
                flat[f"{spec.option_prefix}_{key}"] = value
        pattern = list(data["pattern"])
        model = {k: data[k] for k in MODEL_OPTIONS if k in data}
        model["shared_layers"] = model.get("shared_layers") or None
        return cls.create(pattern, registry=registry, **model, **flat)

    def to_json(self, **kwargs: Any) -> str:
        return json.dumps(self.to_dict(), **({"indent": 2} | kwargs))

    @classmethod
    def from_json(cls, text: str) -> HybridConfig:
        return cls.from_dict(json.loads(text))

    def save(self, path: str | Path) -> None:
        Path(path).write_text(self.to_json() + "\n")

    @classmethod
    def load(cls, path: str | Path) -> HybridConfig:
        return cls.from_json(Path(path).read_text())

"""``HybridConfig``: everything needed to rebuild a model; validated, immutable, hashable.

A config is the pattern (layer names), the model options (the fields of
:class:`~hybridzoo.ModelOptions`) and one options record per layer type (``layer_options``, an
immutable mapping). Every way of making one validates it against the registry and reports every
problem at once: :meth:`HybridConfig.create` (a user's flat ``<prefix>_<field>`` options),
the constructor (records), :meth:`~HybridConfig.from_dict`, :meth:`~HybridConfig.replace` and
``attrs.evolve``. Creating a config needs no torch.

The layers of the model read their options through :meth:`HybridConfig.options_of` (a layer
name and a pattern position): a position with options of its own (``"C C{kernel_size=8}"``,
see :mod:`hybridzoo.grammar`) has its own record there, kept in ``position_options`` (a shared
layer's under its name).

``to_dict`` writes ``config_version`` 3 when some position has options of its own (the keys
``position_options``, 1-based, and ``shared_layer_options``), else 2; version 1 (no ``norm``:
LayerNorm) is still read.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs

from hybridzoo.config_fields import OWN_KEYS, LayerOptions, read_own, validated
from hybridzoo.errors import ConfigError, HybridZooError, did_you_mean
from hybridzoo.model_options import MODEL_OPTIONS, ModelOptions, with_model_options
from hybridzoo.patterns import PatternLike, resolve_pattern
from hybridzoo.positions import PositionOptions
from hybridzoo.registry import Registry, get_registry
from hybridzoo.spec import LayerSpec

__all__ = ["CONFIG_VERSION", "MODEL_OPTIONS", "HybridConfig", "LayerOptions"]

CONFIG_VERSION = 3
#: the version written when no position has options of its own (readable by older releases)
PLAIN_CONFIG_VERSION = 2
#: the ``config_version`` values :meth:`HybridConfig.from_dict` reads
READABLE_VERSIONS = (1, 2, 3)


@attrs.frozen(kw_only=True, init=False, repr=False)
class HybridConfig(ModelOptions):
    """A validated, immutable model configuration.

    Make one with :meth:`create` (a pattern and flat options, as :func:`hybridzoo.build` takes
    them), with the constructor (``HybridConfig(pattern=("conv",), embed_dim=8)``; layer
    options as records or ``{field: value}`` mappings), or with :meth:`from_dict`.

    Attributes:
        pattern: layer names, one per block.
        layer_options: ``{layer name: options record}`` for every layer type used (immutable).
        position_options: the options some positions set themselves (``{0-based index or shared
            layer name: {field: value}}``); :meth:`options_of` gives their records.
        embed_dim, hidden_size, dropout, shared_layers, output, positional_encoding, norm,
            norm_eps: the model options (:class:`~hybridzoo.ModelOptions`); ``embed_dim`` is
            resolved (never ``None``) and ``shared_layers`` is ``((layer, (pos, ...)), ...)``.
    """

    pattern: tuple[str, ...]
    layer_options: LayerOptions
    position_options: PositionOptions = attrs.field(factory=PositionOptions)

    def __init__(
        self,
        *,
        pattern: PatternLike,
        layer_options: Mapping[str, Any] | None = None,
        position_options: PositionOptions | None = None,
        registry: Registry | None = None,
        **model_options: Any,
    ) -> None:
        fields = validated(
            pattern, model_options, records=layer_options, registry=registry, own=position_options
        )
        self.__attrs_init__(**fields)  # type: ignore[attr-defined]

    @classmethod
    def _from_fields(cls, fields: dict[str, Any]) -> HybridConfig:
        config = cls.__new__(cls)
        config.__attrs_init__(**fields)  # type: ignore[attr-defined]
        return config

    @classmethod
    @with_model_options
    def create(
        cls, pattern: PatternLike, *, registry: Registry | None = None, **options: Any
    ) -> HybridConfig:
        """Validate a user's call (as :func:`hybridzoo.build` takes it) and return the config.

        ``options`` are the model options (:class:`~hybridzoo.ModelOptions`) and the layers'
        ``<prefix>_<field>`` options; every problem is reported at once (:class:`OptionError`).
        ``embed_dim=None`` (the default here) means ``embed_dim = hidden_size``.
        """
        model = {k: options.pop(k) for k in list(options) if k in MODEL_OPTIONS}
        return cls._from_fields(validated(pattern, model, flat=options, registry=registry))

    # -- views ---------------------------------------------------------------------------------

    @property
    def model_options(self) -> ModelOptions:
        """The model options as a :class:`~hybridzoo.ModelOptions` record."""
        return ModelOptions(**{name: getattr(self, name) for name in MODEL_OPTIONS})

    def layer_names(self) -> list[str]:
        """Every layer type of the model, in first-use order (pattern, then shared layers)."""
        return list(dict.fromkeys([*self.pattern, *(n for n, _ in self.shared_layers)]))

    def specs(self, registry: Registry | None = None) -> dict[str, LayerSpec]:
        """``{layer name: spec}`` for every layer type of the model."""
        registry = registry or get_registry()
        return {n: registry.get(n) for n in self.layer_names()}

    def options_of(self, name: str, index: int | None = None) -> Any:
        """The options record of layer ``name`` at pattern index ``index`` (0-based; ``None``
        for a shared layer): what the model builds and counts with. A position with options of
        its own has its own record; every other position of a layer type shares one."""
        record = self.position_options.record(name if index is None else index)
        return self.layer_options[name] if record is None else record

    def entries(self) -> list[Any]:
        """The pattern in list form: a layer name per position, ``{"type": name, field: value}``
        where a position has options of its own (what :func:`hybridzoo.build` takes back)."""
        own = self.position_options
        return [
            {"type": name, **own[i]} if i in own else name for i, name in enumerate(self.pattern)
        ]

    def flat_options(self, registry: Registry | None = None) -> dict[str, Any]:
        """The layer options as the user spells them (``conv_kernel_size``), non-defaults."""
        registry = registry or get_registry()
        out: dict[str, Any] = {}
        for name, record in self.layer_options.items():
            spec = registry.get(name)
            defaults = attrs.asdict(spec.options(), recurse=False)
            for key, value in attrs.asdict(record, recurse=False).items():
                if defaults.get(key) != value:
                    out[f"{spec.option_prefix}_{key}"] = value
        return out

    def schedule(self) -> list[tuple[str, int | None]]:
        """The blocks in the order they run, as ``(layer name, pattern index)`` pairs.

        The index is 0-based for a pattern entry and ``None`` for an application of a shared
        layer (which follows the entry at its 1-based position): ``"C C"`` with
        ``shared_layers={"mlp": [1]}`` runs ``[("conv", 0), ("mlp", None), ("conv", 1)]``.
        """
        after: dict[int, list[str]] = {}
        for layer, positions in self.shared_layers:
            for p in positions:
                after.setdefault(p, []).append(layer)
        order: list[tuple[str, int | None]] = []
        for i, name in enumerate(self.pattern):
            order.append((name, i))
            order.extend((layer, None) for layer in after.get(i + 1, []))
        return order

    def replace(self, *, registry: Registry | None = None, **changes: Any) -> HybridConfig:
        """A copy with some options changed, re-validated; every other option is kept.

        ``changes`` are what :meth:`create` takes: ``pattern`` (any form: a string is parsed
        as by :func:`hybridzoo.build`), model options and ``<prefix>_<field>`` layer options.
        ``shared_layers=None`` (or ``{}``) removes the shared layers, as it means none in
        :func:`hybridzoo.build`. The positions keep their own options unless ``pattern`` is
        given (a new pattern brings its own), and so do the shared layers unless
        ``shared_layers`` is. ``embed_dim`` keeps its value when ``hidden_size`` changes.
        Options of a layer the new pattern no longer has are dropped with an
        :class:`~hybridzoo.UnusedOptionWarning`.
        """
        pattern = changes.pop("pattern") if "pattern" in changes else self.entries()
        own = None
        if "shared_layers" not in changes:  # the shared layers keep their own options
            kept = {k: self.position_options.own(k) for k in self.position_options}
            own = PositionOptions({k: v for k, v in kept.items() if isinstance(k, str)})
        model = {name: getattr(self, name) for name in MODEL_OPTIONS}
        model["shared_layers"] = dict(self.shared_layers)
        model.update({k: changes.pop(k) for k in list(changes) if k in MODEL_OPTIONS})
        layers = {**self.flat_options(registry), **changes}
        fields = validated(pattern, model, flat=layers, registry=registry, own=own)
        return HybridConfig._from_fields(fields)

    def __repr__(self) -> str:
        fields = ", ".join(f"{name}={getattr(self, name)!r}" for name in MODEL_OPTIONS)
        own = f", position_options={self.position_options!r}" if self.position_options else ""
        return (
            f"HybridConfig(pattern={self.pattern!r}, {fields}, "
            f"layer_options={dict(self.layer_options)!r}{own})"
        )

    # -- serialisation ---------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (every option spelt out, defaults included; the positions' own
        options under ``position_options``, keyed by 1-based position, and
        ``shared_layer_options``, written only when there are any)."""
        own = self.position_options
        version = CONFIG_VERSION if own else PLAIN_CONFIG_VERSION
        out: dict[str, Any] = {"config_version": version, "pattern": list(self.pattern)}
        out.update({name: getattr(self, name) for name in MODEL_OPTIONS})
        out["shared_layers"] = {k: list(v) for k, v in self.shared_layers}
        out["layer_options"] = {
            name: attrs.asdict(record) for name, record in self.layer_options.items()
        }
        positions = {str(k + 1): own[k] for k in own if not isinstance(k, str)}
        shared = {k: own[k] for k in own if isinstance(k, str)}
        if positions:
            out["position_options"] = positions
        if shared:
            out["shared_layer_options"] = shared
        return out

    @classmethod
    def from_dict(
        cls, data: Mapping[str, Any], *, registry: Registry | None = None
    ) -> HybridConfig:
        """Rebuild (and re-validate) a config from :meth:`to_dict`'s output."""
        if not isinstance(data, Mapping):
            raise ConfigError(f"a config must be a mapping, got {type(data).__name__}")
        version = data.get("config_version", CONFIG_VERSION)
        if type(version) is not int or version not in READABLE_VERSIONS:
            *first, last = map(str, READABLE_VERSIONS)
            readable = f"{', '.join(first)} or {last}"
            raise ConfigError(
                f"config_version must be the integer {readable} (the versions this hybridzoo "
                f"reads), got {version!r} ({type(version).__name__}); a config from a newer "
                "hybridzoo needs that one (pip install -U hybridzoo)"
            )
        known = {"config_version", "pattern", "layer_options", *OWN_KEYS, *MODEL_OPTIONS}
        unknown = sorted(map(str, set(data) - known))
        if unknown:
            raise ConfigError(
                f"unknown config keys {unknown}.{did_you_mean(unknown[0], known)} "
                f"Valid: {', '.join(sorted(known))}"
            )
        if "pattern" not in data or "embed_dim" not in data:
            raise ConfigError("a config needs at least 'pattern' and 'embed_dim'")
        pattern = data["pattern"]
        if isinstance(pattern, str):
            try:
                names = json.dumps(resolve_pattern(pattern, registry=registry))
            except HybridZooError:
                names = "a JSON list of layer names"
            raise ConfigError(
                f"'pattern' must be a list of layer names, got the string {pattern!r}; write "
                f"it as to_dict() does: {names}"
            )
        if not isinstance(pattern, list | tuple):
            raise ConfigError(
                f"'pattern' must be a list of layer names, got {type(pattern).__name__}: "
                f"{pattern!r:.80}"
            )
        model = {k: data[k] for k in MODEL_OPTIONS if k in data}
        records = data.get("layer_options")
        own = read_own(data, len(pattern))
        fields = validated(pattern, model, records=records, registry=registry, own=own)
        return cls._from_fields(fields)

    def to_json(self, **kwargs: Any) -> str:
        """:meth:`to_dict` as JSON text (indented by 2 unless told otherwise)."""
        return json.dumps(self.to_dict(), **({"indent": 2} | kwargs))

    @classmethod
    def from_json(cls, text: str, *, registry: Registry | None = None) -> HybridConfig:
        """:meth:`from_dict` of JSON text (a :class:`ConfigError` for text that is not JSON)."""
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"not a JSON config: {exc}") from exc
        return cls.from_dict(data, registry=registry)

    def save(self, path: str | Path) -> None:
        """Write :meth:`to_json` to ``path`` (through a temporary file and a rename)."""
        from hybridzoo.checkpoint import write_atomic

        write_atomic(Path(path), (self.to_json() + "\n").encode())

    @classmethod
    def load(cls, path: str | Path, *, registry: Registry | None = None) -> HybridConfig:
        """Read a config written by :meth:`save`; errors name the file."""
        path = Path(path)
        try:
            return cls.from_json(path.read_text(), registry=registry)
        except (OSError, HybridZooError) as exc:
            raise ConfigError(f"{path}: {exc}") from exc


def config_of(
    pattern: PatternLike | HybridConfig, options: Mapping[str, Any], registry: Registry
) -> HybridConfig:
    """The config of a call that takes a pattern or a config: a config itself (``options``, if
    any, applied by :meth:`HybridConfig.replace`), else :meth:`HybridConfig.create`."""
    if isinstance(pattern, HybridConfig):
        return pattern.replace(registry=registry, **options) if options else pattern
    return HybridConfig.create(pattern, registry=registry, **options)

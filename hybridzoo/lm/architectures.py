"""The registry of whole-model architectures that :func:`hybridzoo.from_transformers` and
:func:`hybridzoo.to_transformers` convert; no torch here.

The core knows no architecture and no layer: each :class:`Architecture` (how one transformers
model class maps to a hybridzoo pattern, its options and its weights) lives with the plugins that
provide its layers, and reaches the core through the entry-point group
``hybridzoo.architectures`` (the value names an :class:`Architecture` or a list of them), or at
run time through :func:`register_architecture`::

    [project.entry-points."hybridzoo.architectures"]
    my_model = "my_plugin.architecture:ARCHITECTURE"

An entry point that fails to load is reported when its architecture is asked for, never skipped
silently. The layer plugins' switches hold here too: ``HYBRIDZOO_DISABLE_PLUGIN_AUTOLOAD=1`` loads
no entry point, and ``HYBRIDZOO_DISABLE_PLUGINS=a,b`` skips those named (by entry point or
distribution) without importing them.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any

import attrs

from hybridzoo.errors import ConversionError, did_you_mean
from hybridzoo.registry.loader import env_flag, env_list, find_entry_points, is_disabled
from hybridzoo.spec import lazy

__all__ = [
    "ENTRY_POINT_GROUP",
    "Architecture",
    "architectures",
    "find_architecture",
    "register_architecture",
]

ENTRY_POINT_GROUP = "hybridzoo.architectures"


def _callable(value: Any) -> Any:
    if value is None or callable(value):
        return value
    return lazy(value)


@attrs.frozen
class Architecture:
    """How one transformers model class converts to and from a :class:`~hybridzoo.HybridLM`.

    Attributes:
        name: the transformers class, e.g. ``"MambaForCausalLM"``.
        model_type: its ``config.model_type`` (what :func:`hybridzoo.from_transformers` looks up).
        from_transformers: ``f(model) -> LMConversion`` (:class:`hybridzoo.lm.convert.LMConversion`:
            the pattern, the :func:`hybridzoo.build_lm` options and the weights), or an import
            string ``"package.module:function"``; a setting with no equivalent is a
            :class:`~hybridzoo.errors.ConversionError` naming it.
        to_transformers: ``f(lm) -> transformers model`` (or an import string), or ``None``
            when the way back is not provided; it raises :class:`ConversionError` naming what
            the model has that the class cannot express.
    """

    name: str
    model_type: str
    from_transformers: Callable[[Any], Any] = attrs.field(converter=_callable)
    to_transformers: Callable[[Any], Any] | None = attrs.field(default=None, converter=_callable)


class _Registry:
    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._loaded = False
        self._by_type: dict[str, Architecture] = {}
        self._failed: dict[str, str] = {}  # entry point -> error

    def _load(self) -> None:
        with self._lock:
            if self._loaded:
                return
            self._loaded = True
            if env_flag("HYBRIDZOO_DISABLE_PLUGIN_AUTOLOAD"):
                return
            disabled = env_list("HYBRIDZOO_DISABLE_PLUGINS")
            for ep in find_entry_points(ENTRY_POINT_GROUP):
                if is_disabled(ep, disabled):
                    continue
                try:
                    found = ep.load()
                    for arch in found if isinstance(found, Sequence) else [found]:
                        self.add(arch)
                except Exception as exc:  # reported when asked for, never skipped silently
                    self._failed[f"{ep.name} = {ep.value}"] = f"{type(exc).__name__}: {exc}"

    def add(self, arch: Architecture, replace: bool = False) -> Architecture:
        if not isinstance(arch, Architecture):
            raise ConversionError(f"expected an Architecture record, got {type(arch).__name__}")
        with self._lock:
            taken = self._by_type.get(arch.model_type)
            if taken is not None and not replace and taken != arch:
                raise ConversionError(
                    f"model_type {arch.model_type!r} is already converted by {taken.name}; pass "
                    "replace=True to replace it"
                )
            self._by_type[arch.model_type] = arch
        return arch

    def all(self) -> list[Architecture]:
        self._load()
        return list(self._by_type.values())

    def find(self, model_type: Any, what: str) -> Architecture:
        self._load()
        if model_type in self._by_type:
            return self._by_type[model_type]
        known = ", ".join(f"{a.name} ({t})" for t, a in sorted(self._by_type.items()))
        hint = did_you_mean(str(model_type), self._by_type) if isinstance(model_type, str) else ""
        failed = "".join(f"; entry point {k} failed: {v}" for k, v in self._failed.items())
        raise ConversionError(
            f"{what} has model_type {model_type!r}, which no installed architecture converts."
            f"{hint} Converted: {known or '(none)'}{failed}"
        )


_REGISTRY = _Registry()


def register_architecture(arch: Architecture, *, replace: bool = False) -> Architecture:
    """Add an architecture at run time (a taken ``model_type`` is an error unless
    ``replace=True``); returns it."""
    _REGISTRY._load()
    return _REGISTRY.add(arch, replace)


def architectures() -> list[Architecture]:
    """Every architecture installed (entry points) or registered."""
    return _REGISTRY.all()


def find_architecture(model_type: str, what: str = "the model") -> Architecture:
    """The architecture of ``model_type``; a :class:`ConversionError` listing those installed
    (and any entry point that failed to load) otherwise."""
    return _REGISTRY.find(model_type, what)

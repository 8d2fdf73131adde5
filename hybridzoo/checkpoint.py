"""Saved models: a directory holding ``config.json`` and ``model.safetensors``.

``config.json`` says what the directory holds::

    {
      "kind": "HybridModel",                 the class to rebuild (see KINDS)
      "format_version": 1,
      "hybridzoo_version": "0.1.0",
      "config": {...},                       the model's config.to_dict()
      "weights": {"file": "model.safetensors", "sha256": "...", "dtype": "float32"},
      "layers": {"conv": {"distribution": "hybridzoo-conv", "version": "0.1.0"}, ...}
    }

- ``sha256`` is the digest of the weights file, checked on load: a corrupted file, or weights
  that belong to another config, is a :class:`~hybridzoo.CheckpointError` naming the file.
- ``layers`` records the distribution (and version) that supplied each layer, so that loading
  without it says what to install, or that ``HYBRIDZOO_DISABLE_PLUGINS`` disabled it.
- ``kind`` names an entry of :data:`KINDS`; :func:`hybridzoo.load` rebuilds any of them. A class
  that can be saved has ``checkpoint_kind`` (its key in ``KINDS``), ``config_class`` (with
  ``to_dict``/``from_dict(data, registry=)``/``layer_names()``) and ``__init__(config, *,
  registry=None)``. A subclass with weights its config does not describe refuses to be saved
  in :meth:`Checkpointed.check_saveable`, before anything is written.

A ``config.json`` written by hybridzoo 0.1.0 (the bare config) still loads; it has no digest.
Writing is atomic: both files go to a temporary directory beside the target, which then
replaces it (see :func:`save`).
"""

from __future__ import annotations

import hashlib
import importlib
import json
import os
import shutil
import uuid
from pathlib import Path
from typing import Any, TypeVar

from hybridzoo.errors import CheckpointError, ConfigError, HybridZooError, UnknownLayerError
from hybridzoo.registry import Registry, get_registry

__all__ = [
    "CONFIG_FILE",
    "KINDS",
    "WEIGHTS_FILE",
    "Checkpointed",
    "load",
    "read_config",
    "save",
    "write_atomic",
]

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
FORMAT_VERSION = 1

#: ``{kind: "module:Class"}``: the classes :func:`load` can rebuild.
KINDS: dict[str, str] = {
    "HybridModel": "hybridzoo.model:HybridModel",
    "HybridLM": "hybridzoo.lm.model:HybridLM",
}


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same folder and a rename."""
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        tmp.write_bytes(data)
        _fsync(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def sha256_file(path: Path) -> str:
    """The hex SHA-256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _install(tmp: Path, target: Path) -> None:
    """Move the finished directory ``tmp`` to ``target``.

    A new or empty target, or one holding only a saved model, is replaced by renames (the
    previous model stays whole until the new one is in place). A target that also holds other
    files keeps them: the two files are replaced one by one, ``config.json`` last, and a save
    interrupted between the two is caught at load by the digest.
    """
    if not target.exists():
        os.rename(tmp, target)
        return
    if set(os.listdir(target)) <= {CONFIG_FILE, WEIGHTS_FILE}:
        old = target.with_name(f".{target.name}.{uuid.uuid4().hex}.old")
        os.rename(target, old)
        os.rename(tmp, target)
        shutil.rmtree(old, ignore_errors=True)
        return
    os.replace(tmp / WEIGHTS_FILE, target / WEIGHTS_FILE)
    os.replace(tmp / CONFIG_FILE, target / CONFIG_FILE)
    tmp.rmdir()


def _layer_sources(names: list[str], registry: Registry) -> dict[str, dict[str, str | None]]:
    out: dict[str, dict[str, str | None]] = {}
    for name in names:
        try:
            distribution, version = registry.source(name)
        except HybridZooError:
            distribution, version = None, None
        out[name] = {"distribution": distribution, "version": version}
    return out


def save(model: Any, directory: str | Path, *, registry: Registry | None = None) -> Path:
    """Write ``model`` (its config, weights and their digest) into ``directory``; see the module
    docstring for the format and :func:`_install` for how an existing directory is replaced."""
    from safetensors.torch import save_file

    from hybridzoo import __version__

    check = getattr(model, "check_saveable", None)
    if check is not None:
        check()
    target = Path(directory).absolute()
    if target.exists() and not target.is_dir():
        raise CheckpointError(f"{target} exists and is not a directory: save into a directory")
    target.parent.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    floats = sorted(
        {str(t.dtype).removeprefix("torch.") for t in tensors.values() if t.is_floating_point()}
    )
    manifest: dict[str, Any] = {
        "kind": model.checkpoint_kind,
        "format_version": FORMAT_VERSION,
        "hybridzoo_version": __version__,
        "config": model.config.to_dict(),
        "weights": {"file": WEIGHTS_FILE, "sha256": None, "dtype": "/".join(floats) or None},
        "layers": _layer_sources(model.config.layer_names(), registry or get_registry()),
    }
    tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex}.tmp")
    tmp.mkdir()
    try:
        save_file(tensors, str(tmp / WEIGHTS_FILE), metadata={"format": "pt"})
        _fsync(tmp / WEIGHTS_FILE)
        manifest["weights"]["sha256"] = sha256_file(tmp / WEIGHTS_FILE)
        (tmp / CONFIG_FILE).write_text(json.dumps(manifest, indent=2) + "\n")
        _fsync(tmp / CONFIG_FILE)
        _install(tmp, target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return Path(directory)


def _read_manifest(directory: Path) -> dict[str, Any]:
    path = directory / CONFIG_FILE
    if not path.is_file():
        leftovers = sorted(directory.parent.glob(f".{directory.name}.*.old"))
        hint = (
            f"; an interrupted save left the previous model in {leftovers[-1]}"
            if leftovers and not directory.exists()
            else ""
        )
        raise CheckpointError(
            f"{path} not found: {directory} is not a saved hybridzoo model (write one with "
            f"model.save(directory)){hint}"
        )
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{path} cannot be read as JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise CheckpointError(f"{path} must hold a JSON object, got {type(data).__name__}")
    if "kind" not in data and "pattern" in data:  # hybridzoo 0.1.0: the bare config
        return {"kind": "HybridModel", "config": data, "weights": {"file": WEIGHTS_FILE}}
    for key, kind in (("kind", str), ("config", dict), ("weights", dict)):
        if not isinstance(data.get(key), kind):
            raise CheckpointError(
                f"{path}: {key!r} must be a JSON {kind.__name__}, got {data.get(key)!r:.60}"
            )
    if data["kind"] not in KINDS:
        raise CheckpointError(
            f"{path}: unknown kind {data['kind']!r}; this hybridzoo loads {', '.join(KINDS)} "
            "(a newer hybridzoo may load it: pip install -U hybridzoo)"
        )
    return data


def _missing_layer_hint(name: str, source: Any, registry: Registry) -> str:
    """How to get back a layer the registry lacks, from what the checkpoint recorded."""
    if not isinstance(source, dict):
        return ""
    distribution, version = source.get("distribution"), source.get("version")
    if distribution is None:
        return (
            f"The model was saved with {name!r} registered at run time: register it again "
            "(hybridzoo.register_layer) before loading."
        )
    where = f"{distribution} {version or ''}".rstrip()
    for record in registry.plugins():
        if record.distribution == distribution and record.status == "disabled":
            return (
                f"It is provided by {where}, which is disabled by HYBRIDZOO_DISABLE_PLUGINS: "
                f"remove {record.name!r} from that variable."
            )
        if record.distribution == distribution and record.status == "failed":
            return f"It is provided by {where}, whose plugin failed to load (`hybridzoo plugins`)."
    pin = f"=={version}" if version else ""
    return f"It is provided by {where}: pip install it ({distribution}{pin})."


def _check_layers(data: dict[str, Any], registry: Registry) -> None:
    for name, source in (data.get("layers") or {}).items():
        if name not in registry:
            hint = _missing_layer_hint(name, source, registry)
            raise UnknownLayerError(name, registry.names(), hint=hint)


def _kind_class(kind: str) -> type:
    module, _, attr = KINDS[kind].partition(":")
    return getattr(importlib.import_module(module), attr)


def _config(directory: Path, data: dict[str, Any], cls: type, registry: Registry) -> Any:
    """The saved config of ``data`` (its layers checked first); an error names the file."""
    _check_layers(data, registry)
    try:
        return cls.config_class.from_dict(data["config"], registry=registry)
    except HybridZooError as exc:
        raise ConfigError(f"{directory / CONFIG_FILE}: {exc}") from exc


def read_config(directory: str | Path, *, registry: Registry | None = None) -> Any:
    """The config of a saved model (its class's ``config_class``), without its weights."""
    directory = Path(directory)
    data = _read_manifest(directory)
    return _config(directory, data, _kind_class(data["kind"]), registry or get_registry())


def load(
    directory: str | Path,
    *,
    kind: type | None = None,
    device: Any = None,
    dtype: Any = None,
    registry: Registry | None = None,
) -> Any:
    """Rebuild a saved model (see :func:`hybridzoo.load`); ``kind``: the class expected."""
    import torch
    from safetensors.torch import load_file

    directory = Path(directory)
    registry = registry or get_registry()
    data = _read_manifest(directory)
    cls = _kind_class(data["kind"])
    if kind is not None and not issubclass(cls, kind):
        raise CheckpointError(
            f"{directory} holds a {data['kind']}, not a {kind.__name__}: load it with "
            "hybridzoo.load(directory)"
        )
    if dtype is not None and not isinstance(dtype, torch.dtype):
        raise ConfigError(f"dtype must be a torch.dtype such as torch.float64, got {dtype!r}")
    config = _config(directory, data, cls, registry)
    name = data["weights"].get("file", WEIGHTS_FILE)
    if not isinstance(name, str) or Path(name).name != name or name in ("", ".", ".."):
        raise CheckpointError(
            f"{directory / CONFIG_FILE}: the weights file must be a file name in the directory "
            f"(e.g. {WEIGHTS_FILE!r}), got {name!r}"
        )
    weights = directory / name
    if not weights.is_file():
        raise CheckpointError(f"{weights} not found (named by {directory / CONFIG_FILE})")
    expected = data["weights"].get("sha256")
    if expected is not None and sha256_file(weights) != expected:
        raise CheckpointError(
            f"{weights} does not match {directory / CONFIG_FILE} (its SHA-256 differs from the "
            "recorded one): the file is corrupted, or a save was interrupted; save the model again"
        )
    try:
        tensors = load_file(str(weights))
    except Exception as exc:  # safetensors raises its own error types
        raise CheckpointError(f"{weights} cannot be read as safetensors: {exc}") from exc
    model = cls(config, registry=registry)
    floats = {t.dtype for t in tensors.values() if t.is_floating_point()}
    if len(floats) == 1:  # the saved dtype, so that loading the values changes none of them
        model.to(next(iter(floats)))
    try:
        # several dtypes (e.g. float32 norms in a bfloat16 model): each tensor keeps its own
        model.load_state_dict(tensors, assign=len(floats) > 1)
    except RuntimeError as exc:
        raise CheckpointError(f"{weights} does not fit {directory / CONFIG_FILE}: {exc}") from exc
    if dtype is not None:
        model.to(dtype)
    if device is not None:
        model.to(device)
    return model.eval()


C = TypeVar("C", bound="Checkpointed")


class Checkpointed:
    """``save`` and ``load`` for a model class listed in :data:`KINDS` (it has
    ``checkpoint_kind``, ``config_class`` and ``__init__(config, *, registry=None)``)."""

    def save(self, directory: str | Path) -> Path:
        """Write ``config.json`` (with the weights' SHA-256 and the layers' distributions) and
        ``model.safetensors`` into ``directory``, atomically (see :mod:`hybridzoo.checkpoint`);
        a tensor shared by two parameters (tied embeddings) is stored once."""
        return save(self, directory)

    def check_saveable(self) -> None:
        """Called by :meth:`save` before anything is written: a subclass whose weights its
        config does not describe (so :func:`hybridzoo.load` could not rebuild it) raises a
        :class:`~hybridzoo.CheckpointError` saying how to keep them instead."""

    @classmethod
    def load(cls: type[C], directory: str | Path, *, device: Any = None, dtype: Any = None) -> C:
        """Rebuild a model written by :meth:`save`: the same weights, in the dtype they were
        saved in (or ``dtype``, a ``torch.dtype``), on ``device`` (default CPU),
        **in eval mode** (call ``.train()`` to train it further). The weights are checked
        against the digest in ``config.json`` (:class:`~hybridzoo.CheckpointError` naming the
        file on a mismatch); a directory holding another kind of model is a
        ``CheckpointError`` too."""
        return load(directory, kind=cls, device=device, dtype=dtype)

"""Functions named by import strings, imported on first use (a plugin's top-level module need not
import torch: ``LayerSpec(factory="my_plugin.layer:make_bodies")``)."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import attrs

from hybridzoo.errors import PluginError

__all__ = ["as_lazy", "lazy"]

_TARGET_RE = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")


@attrs.frozen
class lazy:
    """A function named by an import string ``"package.module:function"``, imported on its
    first call, so that a plugin's top-level module need not import torch.

    ``LayerSpec(factory="my_plugin.layer:make_bodies")`` stores one of these.
    """

    target: str

    def __attrs_post_init__(self) -> None:
        if not isinstance(self.target, str) or not _TARGET_RE.match(self.target):
            raise PluginError(
                f"an import string must look like 'package.module:function', got {self.target!r}"
            )

    def resolve(self) -> Callable[..., Any]:
        """The named function (imported now; an error names the target)."""
        import importlib

        module_name, _, attr = self.target.partition(":")
        try:
            obj: Any = importlib.import_module(module_name)
            for part in attr.split("."):
                obj = getattr(obj, part)
        except (ImportError, AttributeError) as exc:
            raise PluginError(f"cannot import {self.target!r}: {exc}") from exc
        return obj

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.resolve()(*args, **kwargs)


def as_lazy(value: Any) -> Any:
    """An import string as a :class:`lazy` function; anything else unchanged."""
    return lazy(value) if isinstance(value, str) else value

"""A base for bodies built from a plugin's options record, with parameters on a chosen device
and dtype."""

from __future__ import annotations

from typing import Any, ClassVar, Generic, TypeVar

import torch
from torch import nn

from hybridzoo.convention import resolve_options

__all__ = ["OptionsBody"]

R = TypeVar("R")


class OptionsBody(nn.Module, Generic[R]):
    """``Body(hidden_size, options=None, *, device=None, dtype=None, **changes)``.

    ``options`` is the layer's options record (its fields and defaults are documented there;
    ``hybridzoo layers`` lists them), ``None`` for its defaults; ``changes`` are any of its
    fields, for standalone use (``Body(256, head_dim=32)``), checked by the record's own
    validators (:func:`hybridzoo.plugin.resolve_options`); ``device`` and ``dtype`` say where
    and how to create the parameters. A subclass names its record in :attr:`Options` and
    creates its submodules and parameters in :meth:`build`::

        class Conv(OptionsBody[ConvOptions]):
            Options = ConvOptions

            def build(self, hidden_size: int, o: ConvOptions, fk: dict[str, Any]) -> None:
                self.weight = nn.Parameter(torch.empty(hidden_size, o.width, **fk))
    """

    #: the options record class this body is built from
    Options: ClassVar[type]

    def __init__(
        self,
        hidden_size: int,
        options: R | None = None,
        *,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        **changes: Any,
    ) -> None:
        super().__init__()
        o = resolve_options(self.Options, options, changes)
        self.build(hidden_size, o, {"device": device, "dtype": dtype})

    def build(self, hidden_size: int, o: R, fk: dict[str, Any]) -> None:
        """Create the submodules and parameters from the resolved options ``o``; ``fk`` holds
        ``device`` and ``dtype``, for every parameter."""
        raise NotImplementedError

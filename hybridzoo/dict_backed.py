"""A read-only :class:`~collections.abc.Mapping` over a dict that a subclass holds."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

__all__ = ["DictBacked"]


class DictBacked(Mapping[str, Any]):
    """The mapping methods over :meth:`_items`, the dict a subclass holds (``Mapping`` adds
    ``keys``, ``items``, ``get``, ``==`` and ``in`` from them)."""

    __slots__ = ()

    def _items(self) -> Mapping[str, Any]:
        raise NotImplementedError

    def __getitem__(self, key: str) -> Any:
        return self._items()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._items())

    def __len__(self) -> int:
        return len(self._items())

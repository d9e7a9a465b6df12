"""``Kept``: a small bounded memo, least recently used first out, for work a page does again
with the same inputs (a Graph answer's events, a calendar layout, a rendered list).

An entry may hold the objects its key was made from (``held``). Keys made of ``id()`` of
frozen objects are then safe: while the entry lives, those objects live, so no other object
can be given the same id.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable, Iterable
from typing import Generic, TypeVar

V = TypeVar("V")


class Kept(Generic[V]):
    def __init__(self, size: int) -> None:
        self.size = size
        self._items: OrderedDict[Hashable, tuple[tuple[object, ...], V]] = OrderedDict()

    def get(self, key: Hashable) -> V | None:
        item = self._items.get(key)
        if item is None:
            return None
        self._items.move_to_end(key)
        return item[1]

    def put(self, key: Hashable, value: V, held: Iterable[object] = ()) -> V:
        """Keep ``value`` (and ``held``) under ``key``; returns ``value``."""
        self._items[key] = (tuple(held), value)
        while len(self._items) > self.size:
            self._items.popitem(last=False)
        return value

    def __len__(self) -> int:
        return len(self._items)

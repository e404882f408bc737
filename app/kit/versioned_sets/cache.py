"""One bounded cache for what is compiled from a stored set (converted range rows, a parsed
rule document).

Sets are immutable once stored, so an entry never goes stale: nothing is invalidated, the
least recently used entry is dropped past `size`. Keys are `(organization_id, set_id)`: the
set id names one version of one set, and the organization in the key means a set id from
another organization never hits (the loader's organization-scoped query answers 404).

Usage, e.g. on the interpretation path::

    compiled = await COMPILED.get_or_load((org_id, set_id), lambda: load_and_compile(...))
"""

from __future__ import annotations

import uuid
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

V = TypeVar("V")

SetKey = tuple[uuid.UUID, uuid.UUID]
"""(organization_id, set_id)."""


class SetCache(Generic[V]):
    """An LRU of at most `size` values per process (not shared between workers)."""

    def __init__(self, size: int = 32) -> None:
        self.size = size
        self._entries: OrderedDict[SetKey, V] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: SetKey) -> V | None:
        value = self._entries.get(key)
        if value is not None:
            self._entries.move_to_end(key)
        return value

    def put(self, key: SetKey, value: V) -> V:
        self._entries[key] = value
        self._entries.move_to_end(key)
        while len(self._entries) > self.size:
            self._entries.popitem(last=False)
        return value

    def get_or_build(self, key: SetKey, build: Callable[[], V]) -> V:
        cached = self.get(key)
        return cached if cached is not None else self.put(key, build())

    async def get_or_load(self, key: SetKey, load: Callable[[], Awaitable[V]]) -> V:
        """The cached value, or `await load()` stored under `key` (a load that raises stores
        nothing)."""
        cached = self.get(key)
        return cached if cached is not None else self.put(key, await load())

    def clear(self) -> None:
        self._entries.clear()

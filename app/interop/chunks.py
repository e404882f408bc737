"""Large batches commit in chunks: a FHIR ``batch`` Bundle, an HL7 v2 batch file.

As one transaction, a 5,000-entry batch would hold its row locks, the audit chain's lock and
(on SQLite) the database's only write lock until its last entry, and a crash near the end
would lose every entry before it. The units of a batch (a Patient; a report with its
Observations; an HL7 message) already succeed or fail on their own, each in its own SAVEPOINT,
so every ``CHUNK_UNITS`` units the work done so far commits, together with the audit rows of
what it stored: a crash then loses at most the chunk in hand, and re-sending the whole batch
stores nothing twice (natural keys, ``ifNoneExist``, MSH-10 control ids).

The one place in the interop adapters that commits: everything else leaves the commit to the
request's session. The last chunk (every unit of a batch smaller than one chunk) commits with
the request as before. A FHIR ``transaction`` Bundle is never chunked: all or nothing.
"""

from __future__ import annotations

import sys
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

from sqlalchemy.ext.asyncio import AsyncSession

CHUNK_UNITS = 500

T = TypeVar("T")


class Chunks(Generic[T]):
    """Counts a batch's units and commits ``session`` before the first unit of each new chunk.

    ``keep`` writes, in the transaction about to commit, what must commit with the units of
    that chunk (their audit rows, the refused messages kept for re-processing); it receives
    the items the units reported with ``add``. The items of the last chunk stay ``pending``:
    the caller writes them before its own commit, as for an unchunked request."""

    def __init__(
        self,
        session: AsyncSession,
        keep: Callable[[Sequence[T]], Awaitable[None]],
        *,
        size: int | None = None,
    ) -> None:
        self.session = session
        self.keep = keep
        self.size = CHUNK_UNITS if size is None else size
        self.pending: list[T] = []
        self.commits = 0
        self._units = 0

    async def start_unit(self) -> None:
        """Called before each unit: commits the chunk before it once that chunk is full."""
        if self._units >= self.size:
            await self.keep(self.pending)
            await self.session.commit()
            self.pending = []
            self._units = 0
            self.commits += 1
        self._units += 1

    def add(self, *items: T) -> None:
        """What the current unit produced, to be kept with its chunk."""
        self.pending.extend(items)


async def _keep_nothing(items: Sequence[object]) -> None:
    return None


def unchunked(session: AsyncSession) -> Chunks[T]:
    """Units that all commit with the request (a ``transaction`` Bundle; a caller that keeps
    one transaction, e.g. re-processing one refused input)."""
    return Chunks(session, _keep_nothing, size=sys.maxsize)

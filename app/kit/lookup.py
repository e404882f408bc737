"""Load-or-fail: the one line between a repository's `X | None` and a service's `X`."""

from __future__ import annotations

from typing import TypeVar

T = TypeVar("T")


def found(value: T | None, error: Exception) -> T:
    """`value`, or raise `error` when the lookup found nothing (typically a 404 that reads the
    same for an unknown id and for another organization's row)."""
    if value is None:
        raise error
    return value

"""People's names (FHIR HumanName: family, given names, text): storage, display and search.

Given names are stored as one string joined by newlines; names are refused with control
characters, so the join is lossless. Pure functions: no framework imports.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

GIVEN_SEPARATOR = "\n"


@dataclass(frozen=True, slots=True)
class PersonName:
    """A name as read back: ``text`` is the text sent with it, or else the given names followed
    by the family name (what a page shows)."""

    family: str | None
    given: tuple[str, ...]
    text: str


def join_given(given: Sequence[str]) -> str | None:
    cleaned = [g.strip() for g in given if g and g.strip()]
    return GIVEN_SEPARATOR.join(cleaned) if cleaned else None


def split_given(stored: str | None) -> tuple[str, ...]:
    return tuple(stored.split(GIVEN_SEPARATOR)) if stored else ()


def stored_name(family: str | None, given_names: str | None, text: str | None) -> PersonName | None:
    """The name from its stored columns (None when nothing was recorded)."""
    if family is None and given_names is None and text is None:
        return None
    given = split_given(given_names)
    shown = text or " ".join([*given, *([family] if family else [])])
    return PersonName(family=family, given=given, text=shown)

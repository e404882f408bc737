"""The Insomnia Severity Index (ISI): seven items answered 0-4, a total of 0-28, four categories.

The instrument (item texts, anchors, category bands, source) lives in ``app/data/isi.yaml``;
this module validates it on load and scores answers. Pure: no FastAPI, no SQLAlchemy.
Source: Bastien CH, Vallieres A, Morin CM. Sleep Med 2001;2:297-307.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from app.domain.data_files import read_yaml_mapping
from app.domain.plans.facts import ISI_CATEGORIES

DEFAULT_INSTRUMENT_PATH = Path(__file__).resolve().parent.parent / "data" / "isi.yaml"

ITEM_COUNT = 7
ITEM_MIN = 0
ITEM_MAX = 4
TOTAL_MAX = ITEM_COUNT * ITEM_MAX  # 28


class InstrumentError(ValueError):
    """The instrument data is invalid: a deployment defect, never a caller's mistake."""


class InvalidAnswersError(ValueError):
    """Answers that cannot be scored; ``item`` is the 0-based index of the first bad one
    (None when the number of answers is wrong)."""

    def __init__(self, message: str, *, item: int | None = None) -> None:
        super().__init__(message)
        self.item = item


@dataclass(frozen=True, slots=True)
class Item:
    number: int
    text: str
    anchors: tuple[str, ...]  # the labels of answers 0..4


@dataclass(frozen=True, slots=True)
class Category:
    code: str  # ISI_CATEGORIES
    min: int
    max: int  # inclusive
    display: str


@dataclass(frozen=True, slots=True)
class Instrument:
    code: str
    display: str
    source: str
    items: tuple[Item, ...]
    categories: tuple[Category, ...]

    def category(self, total: int) -> Category:
        for category in self.categories:
            if category.min <= total <= category.max:
                return category
        raise InvalidAnswersError(f"total {total} is outside 0-{TOTAL_MAX}")


@dataclass(frozen=True, slots=True)
class Score:
    total: int
    category: str
    category_display: str


def validate_answers(answers: Sequence[object]) -> tuple[int, ...]:
    """The answers as ints, or InvalidAnswersError naming the first bad item."""
    if len(answers) != ITEM_COUNT:
        raise InvalidAnswersError(f"the ISI has {ITEM_COUNT} items; got {len(answers)} answers")
    out: list[int] = []
    for index, answer in enumerate(answers):
        # bool is an int subclass: True is not an answer.
        if not isinstance(answer, int) or isinstance(answer, bool):
            raise InvalidAnswersError(f"items[{index}] must be an integer", item=index)
        if not ITEM_MIN <= answer <= ITEM_MAX:
            raise InvalidAnswersError(
                f"items[{index}] must be between {ITEM_MIN} and {ITEM_MAX}", item=index
            )
        out.append(answer)
    return tuple(out)


def score(answers: Sequence[object], instrument: Instrument | None = None) -> Score:
    """Sum the seven answers and place the total in its category band."""
    valid = validate_answers(answers)
    total = sum(valid)
    category = (instrument or default_instrument()).category(total)
    return Score(total=total, category=category.code, category_display=category.display)


def category_for(total: int) -> str:
    if isinstance(total, bool) or not 0 <= total <= TOTAL_MAX:
        raise InvalidAnswersError(f"total {total} is outside 0-{TOTAL_MAX}")
    return default_instrument().category(total).code


# --- YAML loading -------------------------------------------------------------------------


def load_instrument(path: Path | None = None) -> Instrument:
    source = path or DEFAULT_INSTRUMENT_PATH
    document = read_yaml_mapping(source, InstrumentError, "instrument")
    try:
        return _parse(document)
    except (KeyError, TypeError, ValueError) as error:
        raise InstrumentError(f"{source}: {error}") from error


def _parse(document: dict[str, Any]) -> Instrument:
    items = tuple(
        Item(number=int(raw["number"]), text=str(raw["text"]), anchors=tuple(raw["anchors"]))
        for raw in document["items"]
    )
    if [item.number for item in items] != list(range(1, ITEM_COUNT + 1)):
        raise InstrumentError(f"items must be numbered 1..{ITEM_COUNT}")
    if any(len(item.anchors) != ITEM_MAX - ITEM_MIN + 1 for item in items):
        raise InstrumentError("every item needs one anchor per answer 0..4")
    categories = tuple(
        Category(
            code=str(raw["code"]),
            min=int(raw["min"]),
            max=int(raw["max"]),
            display=str(raw["display"]),
        )
        for raw in document["categories"]
    )
    if tuple(c.code for c in categories) != ISI_CATEGORIES:
        raise InstrumentError(f"categories must be {ISI_CATEGORIES} in this order")
    expected_min = 0
    for category in categories:
        if category.min != expected_min or category.max < category.min:
            raise InstrumentError(f"category {category.code!r} leaves a gap or overlaps")
        expected_min = category.max + 1
    if expected_min != TOTAL_MAX + 1:
        raise InstrumentError(f"categories must cover 0..{TOTAL_MAX}")
    source = str(document["source"]).strip()
    if not source:
        raise InstrumentError("the instrument needs its source")
    return Instrument(
        code=str(document["code"]),
        display=str(document["display"]),
        source=source,
        items=items,
        categories=categories,
    )


@cache
def default_instrument() -> Instrument:
    return load_instrument()

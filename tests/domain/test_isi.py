"""Insomnia Severity Index scoring: totals, category boundaries, refused answers, the data."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from app.domain import isi
from app.domain.plans.facts import ISI_CATEGORIES


def _answers_for(total: int) -> list[int]:
    """Seven answers (0-4) that sum to `total`."""
    answers = []
    for _ in range(7):
        answer = min(4, total)
        answers.append(answer)
        total -= answer
    assert total == 0
    return answers


@pytest.mark.parametrize(
    ("total", "category"),
    [
        (0, "none"),
        (7, "none"),
        (8, "subthreshold"),
        (14, "subthreshold"),
        (15, "moderate"),
        (21, "moderate"),
        (22, "severe"),
        (28, "severe"),
    ],
)
def test_category_boundaries(total: int, category: str) -> None:
    scored = isi.score(_answers_for(total))

    assert (scored.total, scored.category) == (total, category)
    assert isi.category_for(total) == category


def test_every_total_has_exactly_one_category() -> None:
    categories = [isi.category_for(total) for total in range(29)]

    assert categories == ["none"] * 8 + ["subthreshold"] * 7 + ["moderate"] * 7 + ["severe"] * 7


def test_the_total_is_the_sum_of_the_items_in_any_order() -> None:
    assert isi.score([0, 1, 2, 3, 4, 3, 2]).total == 15
    assert isi.score([2, 3, 4, 3, 2, 1, 0]).category == "moderate"


@pytest.mark.parametrize(
    ("answers", "item"),
    [
        ([0, 0, 0, 5, 0, 0, 0], 3),
        ([-1, 0, 0, 0, 0, 0, 0], 0),
        ([0, 0, 0, 0, 0, 0, 2.0], 6),
        ([0, True, 0, 0, 0, 0, 0], 1),
        ([0, 0, "2", 0, 0, 0, 0], 2),
        ([0, 0, 0, 0, None, 0, 0], 4),
    ],
)
def test_an_invalid_answer_is_refused_naming_the_item(answers: list[object], item: int) -> None:
    with pytest.raises(isi.InvalidAnswersError, match=rf"items\[{item}\]") as raised:
        isi.score(answers)

    assert raised.value.item == item


@pytest.mark.parametrize("count", [0, 6, 8])
def test_a_wrong_number_of_answers_is_refused(count: int) -> None:
    with pytest.raises(isi.InvalidAnswersError, match="7 items") as raised:
        isi.score([1] * count)

    assert raised.value.item is None


@pytest.mark.parametrize("total", [-1, 29, True])
def test_a_total_outside_0_to_28_has_no_category(total: int) -> None:
    with pytest.raises(isi.InvalidAnswersError):
        isi.category_for(total)


def test_the_packaged_instrument_has_its_items_bands_and_source() -> None:
    instrument = isi.default_instrument()

    assert instrument.code == "ISI"
    assert len(instrument.items) == 7
    assert all(len(item.anchors) == 5 for item in instrument.items)
    assert instrument.items[0].text == "Difficulty falling asleep"
    assert tuple(c.code for c in instrument.categories) == ISI_CATEGORIES
    assert [(c.min, c.max) for c in instrument.categories] == [(0, 7), (8, 14), (15, 21), (22, 28)]
    assert "Sleep Med 2001;2" in instrument.source
    assert "Bastien" in instrument.source


def _write(tmp_path: Path, change: dict[str, object]) -> Path:
    document = yaml.safe_load(isi.DEFAULT_INSTRUMENT_PATH.read_text(encoding="utf-8"))
    document.update(change)
    path = tmp_path / "isi.yaml"
    path.write_text(yaml.safe_dump(document), encoding="utf-8")
    return path


def test_an_instrument_with_a_gap_between_bands_is_refused(tmp_path: Path) -> None:
    bands = [
        {"code": "none", "min": 0, "max": 7, "display": "a"},
        {"code": "subthreshold", "min": 9, "max": 14, "display": "b"},
        {"code": "moderate", "min": 15, "max": 21, "display": "c"},
        {"code": "severe", "min": 22, "max": 28, "display": "d"},
    ]

    with pytest.raises(isi.InstrumentError, match="gap"):
        isi.load_instrument(_write(tmp_path, {"categories": bands}))


def test_an_instrument_with_six_items_is_refused(tmp_path: Path) -> None:
    items = yaml.safe_load(isi.DEFAULT_INSTRUMENT_PATH.read_text(encoding="utf-8"))["items"][:6]

    with pytest.raises(isi.InstrumentError, match="numbered"):
        isi.load_instrument(_write(tmp_path, {"items": items}))

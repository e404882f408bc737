"""Which detail block an item category carries, shared by rule-set templates and edited items."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from pydantic import ValidationError

from app.domain.plans.items import DETAIL_FIELDS, Category, misplaced_detail
from app.domain.plans.rules import ItemTemplate, read_default_rule_set


def _item(**given: Any) -> SimpleNamespace:
    return SimpleNamespace(**{name: given.get(name) for name in DETAIL_FIELDS})


def test_details_that_fit_the_category_pass() -> None:
    assert misplaced_detail(Category.SUPPLEMENT, _item(supplement={"mineral": "zinc"})) is None
    assert misplaced_detail(Category.DIET, _item()) is None


def test_a_missing_detail_is_named_first_then_a_foreign_one() -> None:
    assert misplaced_detail(Category.HERBAL, _item()) == ("herbal", True)
    assert misplaced_detail(Category.DIET, _item(retest={})) == ("retest", False)
    # Fields are checked in DETAIL_FIELDS order: the foreign supplement comes before the herbal.
    assert misplaced_detail(Category.HERBAL, _item(supplement={})) == ("supplement", False)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"referral": None}, "a referral template needs `referral`"),
        ({"retest": {"analytes": ["zinc"], "due_in_days": 30}}, "cannot have `retest`"),
    ],
)
def test_a_template_with_misplaced_details_is_refused(change: dict[str, Any], message: str) -> None:
    template = next(t for t in read_default_rule_set().templates if t.category is Category.REFERRAL)
    data = template.model_dump(mode="json") | change
    with pytest.raises(ValidationError, match=message):
        ItemTemplate.model_validate(data)

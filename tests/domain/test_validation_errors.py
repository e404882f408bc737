"""The shared wording of document validation errors (range sets and rule sets)."""

from __future__ import annotations

from app.domain.validation_errors import error_path, errors_message


def test_error_path_writes_indexes_in_brackets() -> None:
    assert error_path(["rows", 3, "low"]) == "rows[3].low"
    assert error_path([]) == ""


def test_errors_message_names_five_errors_and_counts_the_rest() -> None:
    errors = [{"path": f"rows[{i}]", "msg": "bad", "line": i + 2} for i in range(7)]
    message = errors_message("range set", errors)
    assert message.startswith("the range set has 7 errors: line 2: rows[0]: bad; ")
    assert "rows[4]: bad (and 2 more)" in message
    assert "rows[5]" not in message
    assert errors_message("rule set", [{"path": "", "msg": "odd"}]) == (
        "the rule set has 1 error: document: odd"
    )

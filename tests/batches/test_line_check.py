"""A batch line's JSON bounds check (``app.batches.ndjson._check_line``) gives the verdict of the
single POST's check (``app.core.json_guard.check_json``) for any line, its shortcut aside."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from app.batches.ndjson import _check_line
from app.core.json_guard import JsonLimits, check_json

# Small bounds, so random text breaks them often.
_TIGHT = JsonLimits(max_depth=3, max_digits=4, max_exponent=5)
# The characters the check cares about, and a few it does not.
_ALPHABET = '"\\{}[]0123456789.eE+-:, aZ\u00b5'


@settings(max_examples=3000, deadline=None)
@given(st.text(alphabet=_ALPHABET, max_size=60))
def test_any_text_gets_the_verdict_of_the_single_post_check(text: str) -> None:
    raw = text.encode()
    assert _check_line(raw, _TIGHT) == check_json(raw, _TIGHT)
    assert _check_line(raw, JsonLimits()) == check_json(raw, JsonLimits())


def _nested(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


def test_a_panel_line_of_strings_passes_and_numbers_or_nesting_are_still_bounded() -> None:
    line = json.dumps({"source": "lab", "accession": "A-12345678901234567", "x": "1e99"}).encode()
    assert _check_line(line, _TIGHT) is None
    for text in (
        b'{"value": 123456}',
        b'{"value": 1e9}',
        b'{"a": "\\"", "value": 123456}',
        b'{"b": 123456, "c": "unterminated',
        _nested(4),
        b'{"a": "' + _nested(9) + b'", "b": ' + _nested(4) + b"}",
    ):
        assert _check_line(text, _TIGHT) is not None
        assert _check_line(text, _TIGHT) == check_json(text, _TIGHT)

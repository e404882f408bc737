"""Which representation of a plan a client's Accept header asks for."""

from __future__ import annotations

import pytest

from app.plans.errors import NotAcceptableError
from app.plans.negotiation import Representation, negotiate


@pytest.mark.parametrize(
    ("accept", "expected"),
    [
        ("", Representation.JSON),
        ("application/json", Representation.JSON),
        ("*/*", Representation.JSON),
        ("text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8", Representation.HTML),
        ("text/html;q=0.5, application/json", Representation.JSON),
        ("application/json;q=0.5, text/html;q=0.5", Representation.HTML),
        ("text/*", Representation.HTML),
        ("TEXT/HTML", Representation.HTML),
    ],
)
def test_a_browser_gets_the_printable_page_and_a_program_gets_json(
    accept: str, expected: Representation
) -> None:
    assert negotiate(accept) is expected


@pytest.mark.parametrize("accept", ["application/xml", "text/html;q=0, application/json;q=0"])
def test_an_accept_header_allowing_neither_is_406(accept: str) -> None:
    with pytest.raises(NotAcceptableError):
        negotiate(accept)


def test_a_malformed_quality_counts_as_not_acceptable() -> None:
    with pytest.raises(NotAcceptableError):
        negotiate("text/html;q=high")

"""The segment count both HL7 channels check before parsing anything."""

from __future__ import annotations

import pytest

from app.interop.hl7.intake import segment_count


@pytest.mark.parametrize(
    ("text", "count"),
    [
        ("MSH|^~\\&|LAB", 1),
        ("MSH|a\rPID|b\rOBR|c", 3),
        ("MSH|a\nPID|b\nOBR|c", 3),
        ("MSH|a\r\nPID|b\r\nOBR|c", 3),  # CRLF ends one segment, not two
        ("MSH|a\r\nPID|b\rOBR|c\nOBX|d", 4),
    ],
)
def test_every_line_ending_ends_one_segment(text: str, count: int) -> None:
    assert segment_count(text) == count

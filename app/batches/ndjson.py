"""NDJSON into parsed lines for ``app.batches.service.run_parsed``: each line is checked and
parsed exactly as ``POST /api/v1/panels`` checks and parses its body (the JSON guard, the JSON
decoder, the ``PanelCreate`` validation), and a refused line carries the very problem object
the single POST answers (``instance`` aside), built by the same renderers
(``app.core.errors``).

Lines are cut from the incoming byte chunks as they arrive and parsed one by one: the parsed
panel and the line's bytes are kept with the line (its bytes for the refused-input store), so
what a chunk holds is bounded by the chunk's byte budget rather than by lines x the line cap.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from typing import Any, NamedTuple

import orjson
from pydantic import ValidationError

from app.batches.schemas import LineOutcome
from app.core.config import Settings
from app.core.errors import JsonLimitError, problem_body, validation_problem
from app.core.json_guard import JsonLimits, JsonViolation, check_json
from app.panels.schemas import PanelCreate

# Lines this large are checked in a worker thread, as the middleware checks a single body.
_OFFLOAD_CHECK_BYTES = 64 * 1024
_DIGIT = re.compile(rb"[0-9]")


class ParsedLine(NamedTuple):
    """One input item of a batch: its line (or entry) number, the panel to ingest or the
    outcome it was already refused with, and the bytes of input it stands for (counted
    against the chunk's byte budget; 0 when the caller does not know), and those bytes (kept
    with a refused line; ``None`` when not held, e.g. a line over the cap)."""

    line: int
    item: PanelCreate | LineOutcome
    size: int = 0
    raw: bytes | None = None


def json_limits_of(settings: Settings) -> JsonLimits:
    """The bounds the middleware applies to a single JSON body (``app.main``)."""
    return JsonLimits(
        max_depth=settings.max_json_depth,
        max_digits=settings.max_json_number_digits,
        max_exponent=settings.max_json_number_exponent,
    )


def refused(line: int, problem: dict[str, Any]) -> LineOutcome:
    return LineOutcome(line=line, outcome="refused", status=problem["status"], problem=problem)


async def split_lines(
    chunks: AsyncIterator[bytes], max_line_bytes: int
) -> AsyncIterator[tuple[int, bytes | None]]:
    """(line number, bytes) per non-empty line; ``None`` for a line over the cap, whose bytes
    are dropped as they arrive (never held whole)."""
    buffer = b""
    number = 0
    skipping = False
    async for chunk in chunks:
        buffer += chunk
        start = 0  # cut lines by offset: re-slicing the rest per line would be quadratic
        while (end := buffer.find(b"\n", start)) >= 0:
            line, start = buffer[start:end], end + 1
            number += 1
            if skipping or len(line) > max_line_bytes:
                skipping = False
                yield number, None
            elif line.strip():
                yield number, line
        buffer = buffer[start:]
        if len(buffer) > max_line_bytes:
            skipping, buffer = True, b""
    if skipping or buffer.strip():
        yield number + 1, None if skipping else buffer


async def parse_lines(
    lines: AsyncIterator[tuple[int, bytes | None]],
    *,
    max_line_bytes: int,
    json_limits: JsonLimits,
) -> AsyncIterator[ParsedLine]:
    """Each line parsed as it arrives (``split_lines`` output in, ``ParsedLine`` out)."""
    async for number, raw in lines:
        if raw is None:
            yield ParsedLine(number, refused(number, _too_large(max_line_bytes)))
            continue
        if len(raw) >= _OFFLOAD_CHECK_BYTES:
            violation = await asyncio.to_thread(check_json, raw, json_limits)
        else:
            violation = _check_line(raw, json_limits)
        if violation is not None:
            problem = JsonLimitError.of(violation).problem()
            yield ParsedLine(number, refused(number, problem), len(raw), raw)
            continue
        yield ParsedLine(number, parse_panel(number, raw), len(raw), raw)


def _check_line(raw: bytes, limits: JsonLimits) -> JsonViolation | None:
    """``check_json(raw, limits)``, cheaper for the common line: one without a backslash.

    Without a backslash every quote opens or closes a string, so the text outside strings is
    the even pieces between quotes, each string (an unterminated last one too) standing as
    ``""``, which is exactly what ``check_json``'s string scan leaves (that scan, a regular
    expression stepping through every character inside strings, is most of its cost on a
    panel line, whose text is mostly strings). What is left outside strings has no digit (no
    number to bound) and no more opening brackets than the depth allowed (so it cannot nest
    deeper): no violation. Anything else is checked by ``check_json`` itself, on that same
    outside text (same verdict, same message). A line with a backslash is checked as is."""
    if b"\\" in raw:
        return check_json(raw, limits)
    pieces = raw.split(b'"')
    outside = b'""'.join(pieces[0::2])
    if not len(pieces) % 2:  # an odd number of quotes: the last string runs to the end
        outside += b'""'
    if (
        _DIGIT.search(outside) is None
        and outside.count(b"[") + outside.count(b"{") <= limits.max_depth
    ):
        return None
    return check_json(outside, limits)


def _too_large(limit: int) -> dict[str, Any]:
    # The single POST's 413, for one line.
    return problem_body(
        413,
        title="Request body too large",
        detail=f"The line exceeds {limit} bytes.",
        type_slug="payload-too-large",
    )


def parse_panel(line: int, raw: bytes) -> PanelCreate | LineOutcome:
    """``raw`` decoded and validated as the single POST's body is: the stdlib decoder
    FastAPI uses decides what is JSON (orjson first, only for speed: on any text orjson
    refuses, the stdlib decoder has the last word, e.g. `NaN` or a lone surrogate), and
    errors are located under ``body`` as FastAPI locates them."""
    try:
        value: Any = orjson.loads(raw)
    except orjson.JSONDecodeError:
        try:
            value = json.loads(raw)
        except json.JSONDecodeError as exc:
            return refused(line, _malformed(exc.pos, exc.msg))
        except ValueError as exc:  # not UTF-8 (or UTF-16/32): not JSON text either
            return refused(line, _malformed(0, str(exc)))
    try:
        # As FastAPI validates a body (from_attributes: the same error for a non-object).
        return PanelCreate.model_validate(value, from_attributes=True)
    except ValidationError as exc:
        errors = [{**err, "loc": ("body", *err["loc"])} for err in exc.errors()]
        return refused(line, validation_problem(errors))


def _malformed(position: int, message: str) -> dict[str, Any]:
    error = {
        "type": "json_invalid",
        "loc": ("body", position),
        "msg": "JSON decode error",
        "ctx": {"error": message},
    }
    return validation_problem([error])

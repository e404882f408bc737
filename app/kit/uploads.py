"""Configuration documents uploaded as JSON or YAML (range sets, plan rule sets)."""

from __future__ import annotations

from typing import Any

from fastapi import Request

from app.core.errors import AppError, UnprocessableError

YAML_TYPES = ("application/yaml", "application/x-yaml", "text/yaml")


class UnsupportedMediaTypeError(
    AppError, status=415, slug="unsupported-media-type", title="Unsupported media type"
): ...


class MalformedJsonError(AppError, status=400, slug="malformed-json", title="Malformed JSON"): ...


def media_type(request: Request, default: str = "application/json") -> str:
    return request.headers.get("content-type", default).split(";")[0].strip().lower()


async def body_text(request: Request) -> tuple[bytes, str]:
    """The raw body and its UTF-8 text; a body that is not UTF-8 is a 422."""
    raw = await request.body()
    try:
        return raw, raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UnprocessableError("The body is not UTF-8 text.") from exc


def format_error_entry(error: dict[str, Any]) -> dict[str, Any]:
    """A YAML/CSV parse error in the shape of every problem's `errors` entry."""
    entry: dict[str, Any] = {"field": error.get("path", ""), "message": error.get("msg", "")}
    if "type" in error:
        entry["code"] = error["type"]
    if "line" in error:
        entry["line"] = error["line"]
    return entry

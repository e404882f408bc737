"""Content negotiation for a plan read: JSON for programs, the printable page for browsers."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

from fastapi import Depends, Request

from app.plans.errors import NotAcceptableError


class Representation(StrEnum):
    JSON = "application/json"
    HTML = "text/html"


def _qualities(accept: str) -> dict[str, float]:
    """Each media range of an Accept header with its quality (the first mention wins)."""
    quality: dict[str, float] = {}
    for part in accept.split(","):
        media, *params = (p.strip() for p in part.split(";"))
        q = 1.0
        for param in params:
            if param.startswith("q="):
                try:
                    q = float(param[2:])
                except ValueError:
                    q = 0.0
        quality.setdefault(media.lower(), q)
    return quality


def negotiate(accept: str) -> Representation:
    """The printable page when `text/html` is asked for at least as strongly as JSON
    (browsers), else JSON (also without Accept); 406 when Accept allows neither."""
    accept = accept.strip()
    if not accept:
        return Representation.JSON
    quality = _qualities(accept)
    html = quality.get("text/html", quality.get("text/*", 0.0))
    json = quality.get("application/json", quality.get("application/*", quality.get("*/*", 0.0)))
    if html <= 0 and json <= 0:
        raise NotAcceptableError("This resource is available as application/json or text/html.")
    return Representation.HTML if html > 0 and html >= json else Representation.JSON


def _representation(request: Request) -> Representation:
    return negotiate(request.headers.get("accept", ""))


# A route parameter: the representation the client accepts (406 before anything is loaded).
Negotiated = Annotated[Representation, Depends(_representation)]

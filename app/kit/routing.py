"""The one way an authenticated API router is declared.

Every `/api/v1` router answers the same problem responses (bad input, missing or refused
credentials) on every route; declaring them here keeps the OpenAPI document consistent when a
router is added, instead of each router repeating (or forgetting) the same mapping.
"""

from __future__ import annotations

from fastapi import APIRouter

from app.auth.deps import AUTH_RESPONSES
from app.kit.problems import PROBLEM_RESPONSES


def api_router(tag: str, prefix: str = "") -> APIRouter:
    """A router tagged `tag` under `prefix`, documenting the shared problem responses."""
    return APIRouter(prefix=prefix, tags=[tag], responses={**PROBLEM_RESPONSES, **AUTH_RESPONSES})

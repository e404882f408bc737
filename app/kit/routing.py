"""The one way an authenticated API router is declared, and how its routes' dependencies are
solved once each.

Every `/api/v1` router answers the same problem responses (bad input, missing or refused
credentials) on every route; declaring them here keeps the OpenAPI document consistent when a
router is added, instead of each router repeating (or forgetting) the same mapping.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

from fastapi import APIRouter
from fastapi.dependencies.models import Dependant
from fastapi.routing import iter_route_contexts
from starlette.routing import BaseRoute

from app.auth.deps import AUTH_RESPONSES
from app.kit.problems import PROBLEM_RESPONSES


def api_router(tag: str, prefix: str = "") -> APIRouter:
    """A router tagged `tag` under `prefix`, documenting the shared problem responses."""
    return APIRouter(prefix=prefix, tags=[tag], responses={**PROBLEM_RESPONSES, **AUTH_RESPONSES})


_Key = tuple[Callable[..., Any] | None, str | None, tuple[str, ...]]


def solve_repeated_dependencies_once(routes: Sequence[BaseRoute]) -> int:
    """Cut the sub-tree under every repeated occurrence of a dependency; returns how many.

    A dependency used by several others (`authenticate` under the session, the scope check and
    the Idempotency-Key) is called once per request (FastAPI caches its value), but FastAPI
    still walks the sub-tree under each occurrence on every request before reading the cache.
    A repeated occurrence keeps its place (its parameter still gets the cached value); only
    its copy of the sub-tree goes. The OpenAPI document is unchanged: its generator skips
    repeated dependencies too.

    Only sub-trees that read nothing from the request are cut (no path, query, header, cookie
    or body parameter, no OAuth scopes): nothing in them can fail validation, so the first
    occurrence, which always runs earlier, has always put the value in the cache.
    """
    cut = 0
    for context in iter_route_contexts(routes):
        dependant = getattr(context, "dependant", None)
        if isinstance(dependant, Dependant):
            cut += _cut_repeats(dependant, set())
    return cut


def _cut_repeats(dependant: Dependant, seen: set[_Key]) -> int:
    # Depth first, in the order FastAPI solves siblings: a first occurrence is always finished
    # before a later one is reached.
    cut = 0
    for index, sub in enumerate(dependant.dependencies):
        key: _Key = (sub.call, sub.scope, tuple(_scopes(sub)))
        if key in seen and sub.use_cache and not key[2] and _reads_nothing(sub):
            if sub.dependencies:
                dependant.dependencies[index] = dataclasses.replace(sub, dependencies=[])
                cut += 1
            continue
        seen.add(key)
        cut += _cut_repeats(sub, seen)
    return cut


def _scopes(dependant: Dependant) -> list[str]:
    return [*(dependant.parent_oauth_scopes or ()), *(dependant.own_oauth_scopes or ())]


def _reads_nothing(dependant: Dependant) -> bool:
    pending = [dependant]
    while pending:
        current = pending.pop()
        if (
            current.path_params
            or current.query_params
            or current.header_params
            or current.cookie_params
            or current.body_params
            or current.security_scopes_param_name
            or _scopes(current)
        ):
            return False
        pending.extend(current.dependencies)
    return True

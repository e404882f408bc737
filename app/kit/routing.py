"""The one way an authenticated API router is declared, how its routes' dependencies are
solved once each, and how the hottest routes are found without walking every router.

Every `/api/v1` router answers the same problem responses (bad input, missing or refused
credentials) on every route; declaring them here keeps the OpenAPI document consistent when a
router is added, instead of each router repeating (or forgetting) the same mapping.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from fastapi import APIRouter, FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute, iter_route_contexts
from starlette.routing import BaseRoute, Host, Mount
from starlette.types import ASGIApp, Receive, Scope, Send

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


# --- hot routes first -----------------------------------------------------------------------


# A hot route's own entry point (optional): answers the request itself, or hands it to the
# route's FastAPI handling (the fourth argument) with a `receive` that still yields the body.
Direct = Callable[[Scope, Receive, Send, ASGIApp], Awaitable[None]]
# Builds a Direct for the route it answers (its APIRoute: what FastAPI puts in scope["route"]).
DirectFor = Callable[[APIRoute], Direct]
HotRoute = tuple[str, str] | tuple[str, str, DirectFor]


@dataclasses.dataclass(frozen=True, slots=True)
class _Shortcut:
    method: str
    path_regex: re.Pattern[str]
    index: int  # of the app-level route (an included router) that holds the hot route
    route: BaseRoute
    direct: Direct | None = None


class HotRouteDispatch:
    """The app router's entry point, with a shortcut for a few hot routes.

    FastAPI tries the app's routes in order, asking every included router in turn whether one
    of its routes matches, then asks the matching router again to pick its route. A request
    for a hot route goes straight to the included router that holds it, which then picks its
    route exactly as before. That is FastAPI's own choice whenever no earlier route could
    fully match the same method and path (checked when the shortcut is installed, see
    `dispatch_hot_routes_first`): an earlier route that matches the path but not the method
    never stops FastAPI's loop either. Anything else, or an app whose routes have changed
    since, takes FastAPI's loop.
    """

    def __init__(self, router: APIRouter, shortcuts: Sequence[_Shortcut]) -> None:
        self.router = router
        self.shortcuts = tuple(shortcuts)
        self._routes = tuple(router.routes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and not scope.get("root_path"):
            method = scope.get("method")
            path = scope.get("path", "")
            for shortcut in self.shortcuts:
                if shortcut.method == method and shortcut.path_regex.match(path):
                    routes = self.router.routes
                    if len(routes) != len(self._routes) or routes[shortcut.index] is not (
                        shortcut.route
                    ):
                        break  # routes were added or replaced: FastAPI's loop decides
                    scope.setdefault("router", self.router)
                    if shortcut.direct is not None:
                        await shortcut.direct(scope, receive, send, shortcut.route.handle)
                    else:
                        await shortcut.route.handle(scope, receive, send)
                    return
        await self.router.app(scope, receive, send)


def dispatch_hot_routes_first(app: FastAPI, *hot: HotRoute) -> int:
    """Let requests for `hot` routes (method, path template[, direct entry point]) skip the
    routes before them; returns how many shortcuts were installed. A hot route that an earlier
    route could shadow gets none (nor its direct entry point); an unknown one is a programming
    error."""
    router = app.router
    if router.middleware_stack != router.app or router.form_limits:
        return 0  # router middleware or form limits: FastAPI's own entry point only
    shortcuts: list[_Shortcut] = []
    for method, template, *direct_for in hot:
        shortcut = _shortcut(router.routes, method, template)
        if shortcut is not None:
            if direct_for:
                shortcut = dataclasses.replace(
                    shortcut, direct=direct_for[0](_api_route(shortcut.route, method, template))
                )
            shortcuts.append(shortcut)
    if shortcuts:
        router.middleware_stack = HotRouteDispatch(router, shortcuts)
    return len(shortcuts)


def _api_route(top: BaseRoute, method: str, template: str) -> APIRoute:
    for context in iter_route_contexts([top]):
        route = context.original_route
        if context.path == template and method in (context.methods or ()):
            if isinstance(route, APIRoute):
                return route
    raise ValueError(f"{method} {template} is not a FastAPI route")


def _shortcut(routes: Sequence[BaseRoute], method: str, template: str) -> _Shortcut | None:
    for index, top in enumerate(routes):
        for context in iter_route_contexts([top]):
            if context.path != template or method not in (context.methods or ()):
                continue
            if not hasattr(top, "original_router"):
                return None  # a route of the app itself: FastAPI's loop reaches it soon
            earlier = list(iter_route_contexts(routes[:index]))
            if any(_could_shadow(other, method, template) for other in earlier):
                return None
            return _Shortcut(method, context.path_regex, index, top)
    raise ValueError(f"no route {method} {template}")


def _could_shadow(context: Any, method: str, template: str) -> bool:
    """Whether `context` could fully match a request for `method` and a path `template`
    matches (conservatively: True unless provably not)."""
    route = context.original_route
    if isinstance(route, Host):
        return True
    methods = getattr(context, "methods", None)
    if methods is not None and method not in methods:
        return False  # at most a partial match: FastAPI's loop goes on
    path = context.path
    if not isinstance(path, str):
        return True
    if isinstance(route, Mount):
        path = path.rstrip("/") + "/{path:path}"
    return _paths_overlap(path, template)


def _paths_overlap(first: str, second: str) -> bool:
    """Whether some path could match both templates. Segments holding a parameter may match
    anything but a slash; a `:path` parameter anything at all from there on."""
    a, b = first.split("/"), second.split("/")
    for x, y in zip(a, b, strict=False):
        if ":path}" in x or ":path}" in y:
            return True
        if "{" not in x and "{" not in y and x != y:
            return False
    return len(a) == len(b)

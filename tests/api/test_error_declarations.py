"""An AppError subclass declares its problem in its class line (``status=``, ``slug=``,
``title=``); what it leaves out it inherits, and the handler renders what it declared."""

from __future__ import annotations

import re

from fastapi import FastAPI
from fastapi.testclient import TestClient

import app.main  # noqa: F401  (imports every module, so every AppError subclass is declared)
from app.core.errors import (
    PROBLEM_BASE,
    PROBLEM_JSON,
    AppError,
    ConflictError,
    NotFoundError,
    install_error_handlers,
)
from app.idempotency.errors import IdempotencyKeyInFlightError
from app.plans.errors import NotAcceptableError

SLUG = re.compile(r"^[a-z0-9]+(-[a-z0-9]+)*$")


class _GadgetMissing(NotFoundError, slug="gadget-missing", title="No such gadget"): ...


class _GadgetLocked(AppError, status=423, slug="gadget-locked", title="The gadget is locked"):
    def headers(self) -> dict[str, str] | None:
        return {"Retry-After": "3"}


class _GadgetLockedHard(_GadgetLocked, title="The gadget is locked for good"): ...


def test_the_class_line_sets_the_attributes_and_the_rest_is_inherited() -> None:
    assert (_GadgetMissing.status, _GadgetMissing.type_slug) == (404, "gadget-missing")
    assert _GadgetMissing.title == "No such gadget"
    assert (_GadgetLockedHard.status, _GadgetLockedHard.type_slug) == (423, "gadget-locked")
    assert _GadgetLockedHard.title == "The gadget is locked for good"
    # The bases keep their own problem.
    assert (NotFoundError.status, NotFoundError.type_slug) == (404, "not-found")
    assert (_GadgetLocked.title, AppError.status, AppError.type_slug) == (
        "The gadget is locked",
        400,
        "bad-request",
    )


def test_declared_errors_of_the_service_read_as_before() -> None:
    assert (ConflictError.status, ConflictError.type_slug) == (409, "conflict")
    assert IdempotencyKeyInFlightError.status == 409
    assert IdempotencyKeyInFlightError.type_slug == "idempotency-key-in-flight"
    assert (NotAcceptableError.status, NotAcceptableError.title) == (406, "Not acceptable")


def _subclasses(cls: type[AppError]) -> list[type[AppError]]:
    found: list[type[AppError]] = []
    for sub in cls.__subclasses__():
        found += [sub, *_subclasses(sub)]
    return found


def test_every_declared_error_names_a_client_or_server_problem() -> None:
    declared = [cls for cls in _subclasses(AppError) if cls.__module__.startswith("app.")]
    assert len(declared) > 30
    for cls in declared:
        assert 400 <= cls.status <= 599, cls
        assert SLUG.match(cls.type_slug), cls
        assert cls.title, cls


def test_the_handler_renders_what_the_class_line_declared() -> None:
    api = FastAPI()
    install_error_handlers(api)

    @api.get("/gadgets/{name}")
    async def gadget(name: str) -> None:
        if name == "missing":
            raise _GadgetMissing("No gadget is called missing.", gadget=name)
        raise _GadgetLockedHard("Locked.")

    with TestClient(api) as http:
        missing = http.get("/gadgets/missing")
        locked = http.get("/gadgets/locked")
    assert missing.status_code == 404
    assert missing.headers["content-type"] == PROBLEM_JSON
    assert missing.json() == {
        "type": PROBLEM_BASE + "gadget-missing",
        "title": "No such gadget",
        "status": 404,
        "detail": "No gadget is called missing.",
        "instance": "/gadgets/missing",
        "gadget": "missing",
    }
    assert locked.status_code == 423
    assert locked.headers["retry-after"] == "3"
    assert locked.json()["type"] == PROBLEM_BASE + "gadget-locked"
    assert locked.json()["title"] == "The gadget is locked for good"

"""What can go wrong with a treatment plan, each with its problem type (RFC 9457)."""

from __future__ import annotations

from app.core.errors import AppError, ConflictError, UnprocessableError


class IllegalTransitionError(
    ConflictError, slug="illegal-status-transition", title="This status change is not allowed"
): ...


class PlanNotEditableError(
    ConflictError, slug="plan-not-editable", title="The plan can no longer be edited"
): ...


class BlockingFindingsError(
    ConflictError, slug="blocking-findings", title="Blocking safety findings are unresolved"
): ...


class NoResultsError(
    UnprocessableError, slug="no-results", title="No lab results to draft a plan from"
): ...


class UnknownPanelsError(
    UnprocessableError, slug="unknown-panels", title="Some panels are not this patient's"
): ...


class InvalidOverrideError(
    UnprocessableError,
    slug="invalid-override",
    title="An override does not match an overridable blocking finding",
): ...


class CannotAcknowledgeError(
    UnprocessableError, slug="cannot-acknowledge", title="These results cannot be acknowledged"
): ...


class ReasonRequiredError(
    UnprocessableError, slug="reason-required", title="A reason is required"
): ...


class NotAcceptableError(AppError, status=406, slug="not-acceptable", title="Not acceptable"): ...

"""The problem+json schema, declared once for the OpenAPI document of every router."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class FieldError(BaseModel):
    field: str = Field(description="Path of the offending field, e.g. `body.results[0].unit`.")
    message: str
    code: str | None = None


class Problem(BaseModel):
    """RFC 9457 problem details."""

    type: str = Field(description="URI identifying the problem type.")
    title: str
    status: int
    detail: str | None = None
    instance: str | None = None
    errors: list[FieldError] | None = Field(
        default=None, description="Per-field problems, for validation errors."
    )


PROBLEM_SCHEMA_REF = "#/components/schemas/Problem"


def problem_doc(description: str) -> dict[str, Any]:
    # Not `model=Problem`: FastAPI would document it under application/json, a media type these
    # responses never have. The Problem component is added by app.main.
    return {
        "description": description,
        "content": {"application/problem+json": {"schema": {"$ref": PROBLEM_SCHEMA_REF}}},
    }


PROBLEM_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: problem_doc("Malformed request (bad JSON, bad cursor)."),
    404: problem_doc("The resource does not exist in your organization."),
    413: problem_doc("The request body exceeds the configured limit."),
    422: problem_doc("The request failed validation; `errors` lists each field."),
    500: problem_doc("Unexpected server error (details are logged, never returned)."),
}

from __future__ import annotations

import asyncio
import logging
from typing import Literal

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field
from sqlalchemy import text

from app.core.errors import ServiceUnavailableError
from app.kit.problems import problem_doc

router = APIRouter(
    prefix="/health",
    tags=["health"],
    responses={500: problem_doc("Unexpected server error (details are logged, never returned).")},
)
log = logging.getLogger("app.health")

READINESS_TIMEOUT_SECONDS = 2


class LivenessOut(BaseModel):
    status: Literal["ok"] = Field(description="Always `ok`: the process answers requests.")


class ReadinessOut(BaseModel):
    status: Literal["ok"] = Field(description="`ok`: this replica can serve traffic.")
    database: Literal["ok"] = Field(description="`ok`: the database answered a trivial query.")


@router.get("/live", summary="Liveness probe")
async def live() -> LivenessOut:
    """Answers 200 while the process is up. It never touches the database, so an orchestrator
    does not restart healthy replicas during a database outage."""
    return LivenessOut(status="ok")


@router.get(
    "/ready",
    summary="Readiness probe",
    responses={503: problem_doc("The database cannot be reached; stop routing traffic here.")},
)
async def ready(request: Request) -> ReadinessOut:
    """Answers 200 when the database answers a trivial query within 2 seconds, otherwise 503
    (problem+json), so a load balancer stops sending traffic to this replica."""
    try:
        async with asyncio.timeout(READINESS_TIMEOUT_SECONDS):
            async with request.app.state.engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
    except Exception as exc:  # any failure means "not ready"; the reason goes to the log only
        log.warning("readiness check failed: %s", type(exc).__name__)
        raise ServiceUnavailableError("The database cannot be reached.") from exc
    return ReadinessOut(status="ok", database="ok")

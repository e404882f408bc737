from __future__ import annotations

import asyncio
import logging

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sqlalchemy import text

from app.errors import problem_response

router = APIRouter(prefix="/health", tags=["health"])
log = logging.getLogger("app.health")


@router.get("/live", summary="Liveness probe")
async def live() -> dict[str, str]:
    """Answers 200 while the process is up. It never touches the database, so an orchestrator
    does not restart healthy replicas during a database outage."""
    return {"status": "ok"}


@router.get(
    "/ready",
    summary="Readiness probe",
    responses={503: {"description": "The database cannot be reached"}},
)
async def ready(request: Request) -> JSONResponse:
    """Answers 200 when the database answers a trivial query within 2 seconds, otherwise 503
    (problem+json), so a load balancer stops sending traffic to this replica."""
    try:
        async with asyncio.timeout(2):
            async with request.app.state.engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
    except Exception as exc:  # any failure means "not ready"; the reason goes to the log only
        log.warning("readiness check failed: %s", type(exc).__name__)
        return problem_response(
            503,
            title="Service unavailable",
            detail="The database cannot be reached.",
            type_slug="service-unavailable",
            instance="/health/ready",
        )
    return JSONResponse({"status": "ok", "database": "ok"})

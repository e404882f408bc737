"""``GET /metrics``: the Prometheus text exposition of this process.

Unauthenticated, like ``/health``: a Prometheus server scrapes without credentials, and the
series carry no patient data or identifiers. Restrict who may read it with
``MINERAL_METRICS_ALLOWED_NETWORKS`` (client networks in CIDR notation; the client address is
the peer's, or ``X-Forwarded-For``'s from a proxy uvicorn trusts); others get 403. Turn it off
with ``MINERAL_METRICS_ENABLED=false`` (404).
"""

from __future__ import annotations

import ipaddress
from functools import cache

from fastapi import APIRouter, FastAPI, Request, Response

from app.core.config import Settings
from app.core.errors import AppError
from app.ops import metrics

router = APIRouter(include_in_schema=False)


class MetricsForbiddenError(AppError, status=403, slug="forbidden", title="Forbidden"): ...


@cache
def _networks(
    allowed: tuple[str, ...],
) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    return tuple(ipaddress.ip_network(network, strict=False) for network in allowed)


def client_may_read(settings: Settings, host: str | None) -> bool:
    if not settings.metrics_allowed_networks:
        return True
    if host is None:
        return False
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    networks = _networks(tuple(settings.metrics_allowed_networks))
    return any(address in network for network in networks)


@router.get("/metrics")
async def get_metrics(request: Request) -> Response:
    settings: Settings = request.app.state.settings
    if not client_may_read(settings, request.client.host if request.client else None):
        raise MetricsForbiddenError("This address may not read the metrics.")
    return Response(metrics.render(), media_type=metrics.CONTENT_TYPE)


def install_metrics_route(app: FastAPI, settings: Settings) -> None:
    """Mount ``/metrics`` unless disabled; a malformed network list refuses to start."""
    _networks(tuple(settings.metrics_allowed_networks))
    if settings.metrics_enabled:
        app.include_router(router)

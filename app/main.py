"""Application factory."""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.openapi.utils import get_openapi

from app.audit.router import router as audit_router
from app.auth.oidc import OidcVerifier
from app.auth.router import router as api_keys_router
from app.batches.router import router as panel_batches_router
from app.code_maps.router import router as code_maps_router
from app.core.config import Settings, get_settings
from app.core.db import make_engine, make_sessionmaker
from app.core.docs import install_docs, operation_id, shape_openapi
from app.core.errors import install_error_handlers
from app.core.json_guard import JsonLimits
from app.core.log_config import configure_logging
from app.core.middleware import RequestContextMiddleware
from app.domain.catalog import default_catalog
from app.domain.range_sets import RangeSetDocument
from app.health.router import router as health_router
from app.interop.fhir.router import router as fhir_router
from app.interop.hl7.router import router as hl7_router
from app.kit.content_types import require_json_content_type
from app.kit.problems import Problem
from app.kit.query_params import reject_unknown_query_parameters
from app.kit.routing import (
    HotRoute,
    dispatch_hot_routes_first,
    solve_repeated_dependencies_once,
)
from app.ops import metrics
from app.ops.draining import Drain, DrainMiddleware, chain_signal_handlers
from app.ops.router import install_metrics_route
from app.panels import direct_get, direct_post
from app.panels.router import router as panels_router
from app.patient_context.router import router as patient_context_router
from app.patients.matching import current_policy as current_matching_policy
from app.patients.router import router as patients_router
from app.plan_rules.router import router as plan_rules_router
from app.plans.router import router as plans_router
from app.ranges.router import router as ranges_router
from app.refused_inputs.capture import RefusedInputCapture
from app.refused_inputs.router import router as refused_inputs_router
from app.results.router import router as results_router
from app.series.router import router as series_router
from app.sleep.router import router as sleep_router
from app.timeline.router import router as timeline_router

DESCRIPTION = """
Mineral lab results (magnesium, calcium, zinc, iron, ferritin, copper) in, unit-aware
interpretation against configurable, versioned reference ranges out.

* Post panels with values in any accepted unit (mg/dL, mmol/L, meq/L, ug/dL, umol/L, ...);
  each result is kept as sent **and** in its analyte's canonical unit.
* Each result is flagged with HL7 ObservationInterpretation codes (`L`, `N`, `H`, `LL`, `HH`,
  or `IND` when undecidable) against the range that fits the patient's sex, age and specimen;
  the range applied is stored with the result.
* Errors are RFC 9457 `application/problem+json`.
* Posting a panel is idempotent on `source` + `accession`; every creating POST also takes an
  `Idempotency-Key` header (retries replay the first response).
* **503 + `Retry-After`** means the database is unavailable (FHIR: an OperationOutcome, HL7: `AR`
  ACKs). A create answered 503 (or cut off by a dropped connection) may or may not have been
  stored: retry it unchanged with the same `Idempotency-Key`, Bundle or MSH-10 and it is
  stored exactly once.
* JSON bodies are bounded before parsing: 64 levels of nesting (400), numbers of at most 15
  digits with an exponent within ±30 (422 `json-number-out-of-range`).

**Authentication.** Send an API key as `X-API-Key: mlk_...` (or `Authorization: Bearer
mlk_...`), or an OIDC access token as `Authorization: Bearer <JWT>`. Roles: `integration`
(post patients and panels), `clinician` (read patients, results and trends; re-interpret),
`admin` (reference ranges, API keys, audit trail). You only ever see your own organization's
records: another organization's record answers 404. Every access to patient data is recorded
in an append-only audit trail.
"""


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    configure_logging(settings.log_level)
    engine = make_engine(settings)
    metrics.instrument_engine(engine)
    drain = Drain()

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        default_catalog()  # load and validate the catalog before the first request
        current_matching_policy(settings)  # and the patient-matching file
        _freeze_startup_objects()
        drain.draining = False  # a restarted lifespan (tests reuse one app) serves again
        chain_signal_handlers(drain)  # SIGTERM: answer 503 while in-flight requests finish
        yield
        drain.start()
        await engine.dispose()
        metrics.process_exiting()

    app = FastAPI(
        title="Mineral Labs API",
        version="1.0.0",
        description=DESCRIPTION,
        docs_url=None,
        redoc_url=None,
        lifespan=lifespan,
        # One schema per model (no `Supplement-Input`/`-Output` pairs that generators collide
        # on); camelCase verb operationIds; strict query strings and JSON Content-Types.
        separate_input_output_schemas=False,
        generate_unique_id_function=operation_id,
        dependencies=[
            Depends(_strict_request),
        ],
    )
    app.state.settings = settings
    app.state.engine = engine
    app.state.sessionmaker = make_sessionmaker(engine)
    app.state.read_sessionmaker = make_sessionmaker(engine, read_only=True)

    # A bad OIDC configuration refuses to start rather than refusing every token later.
    app.state.oidc_verifier = OidcVerifier.from_settings(settings)

    install_error_handlers(app)
    # Innermost: refused FHIR Bundles and JSON panels are kept after their transaction ends.
    app.add_middleware(RefusedInputCapture)
    app.state.drain = drain
    app.add_middleware(DrainMiddleware, drain=drain)
    app.add_middleware(
        RequestContextMiddleware,
        max_body_bytes=settings.max_body_bytes,
        json_limits=JsonLimits(
            max_depth=settings.max_json_depth,
            max_digits=settings.max_json_number_digits,
            max_exponent=settings.max_json_number_exponent,
        ),
    )
    if settings.cors_origins:
        # Outermost, so preflight requests are answered before anything else runs.
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST", "PUT", "PATCH", "DELETE"],
            allow_headers=[
                "Authorization",
                "X-API-Key",
                "Content-Type",
                "Idempotency-Key",
                "If-Match",
                "X-Request-ID",
            ],
            expose_headers=[
                "ETag",
                "Location",
                "X-Request-ID",
                "Idempotent-Replayed",
                "Retry-After",
            ],
            max_age=600,
        )
    # Outermost: counts every answer, including CORS preflights, 413s and 503s while draining.
    app.add_middleware(metrics.MetricsMiddleware)
    install_metrics_route(app, settings)
    app.include_router(health_router)
    app.include_router(patients_router)
    app.include_router(patient_context_router)
    app.include_router(sleep_router)
    app.include_router(timeline_router)
    app.include_router(series_router)
    app.include_router(panels_router)
    app.include_router(panel_batches_router)
    app.include_router(results_router)
    app.include_router(ranges_router)
    app.include_router(plan_rules_router)
    app.include_router(plans_router)
    app.include_router(code_maps_router)
    app.include_router(api_keys_router)
    app.include_router(audit_router)
    app.include_router(refused_inputs_router)
    app.include_router(fhir_router)
    app.include_router(hl7_router)
    install_docs(app)
    _document_extra_schemas(app)
    solve_repeated_dependencies_once(app.routes)
    dispatch_hot_routes_first(app, *HOT_ROUTES)
    return app


# Found without asking every router before them (app.kit.routing.HotRouteDispatch); a request
# that needs nothing its route's dependencies would add is answered by its direct entry point.
HOT_ROUTES: tuple[HotRoute, ...] = (
    ("POST", "/api/v1/panels", direct_post.direct_for),
    ("GET", "/api/v1/panels/{panel_id}", direct_get.direct_for),
)


_frozen: list[bool] = []


def _freeze_startup_objects() -> None:
    """Once per process, after startup: what is alive now (modules, the catalog, schemas and
    validators, SQLAlchemy's metadata) lives as long as the process, so the collector stops
    scanning it. A full collection otherwise walks all of it, a pause of ~0.2 s in the middle
    of the requests in flight every few thousand requests."""
    if not _frozen:
        _frozen.append(True)
        gc.collect()
        gc.freeze()


async def _strict_request(request: Request) -> None:
    """The app-wide checks, as one dependency (one node fewer to solve on every request):
    unknown query parameters (400), then a JSON body without a JSON Content-Type (415)."""
    await reject_unknown_query_parameters(request)
    await require_json_content_type(request)


def _document_extra_schemas(app: FastAPI) -> None:
    """Add schemas referenced from hand-written request bodies and problem responses to the
    OpenAPI components."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = get_openapi(
            title=app.title,
            version=app.version,
            description=app.description,
            routes=app.routes,
            separate_input_output_schemas=app.separate_input_output_schemas,
        )
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        for model in (RangeSetDocument, Problem):
            model_schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
            for name, definition in model_schema.pop("$defs", {}).items():
                components.setdefault(name, definition)
            components[model.__name__] = model_schema
        app.openapi_schema = shape_openapi(schema)
        return schema

    app.openapi = openapi  # type: ignore[method-assign]

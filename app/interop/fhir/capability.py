"""The CapabilityStatement: exactly what this facade implements, nothing more."""

from __future__ import annotations

from datetime import date
from functools import cache
from typing import Any

from fhir.resources.R4B.capabilitystatement import CapabilityStatement

from app.interop.fhir.outcome import FHIR_JSON

FHIR_VERSION = "4.0.1"
_RELEASED = date(2026, 1, 1).isoformat()


def _param(name: str, kind: str, documentation: str) -> dict[str, str]:
    return {"name": name, "type": kind, "documentation": documentation}


_COUNT = _param("_count", "number", "Page size, 1-200 (default 50); follow the next link.")


def _resource(
    kind: str, interactions: list[str], params: list[dict[str, str]], documentation: str
) -> dict[str, Any]:
    return {
        "type": kind,
        "documentation": documentation,
        "interaction": [{"code": code} for code in interactions],
        "versioning": "no-version",
        "readHistory": False,
        "updateCreate": False,
        "conditionalCreate": kind == "Patient",
        "conditionalRead": "not-supported",
        "conditionalUpdate": False,
        "conditionalDelete": "not-supported",
        "searchParam": params,
    }


@cache
def capability_statement(base_url: str) -> CapabilityStatement:
    return CapabilityStatement.model_validate(
        {
            "resourceType": "CapabilityStatement",
            "status": "active",
            "date": _RELEASED,
            "publisher": "Mineral Labs",
            "kind": "instance",
            "software": {"name": "Mineral Labs API", "version": "1.0.0"},
            "implementation": {
                "description": "Mineral lab results: FHIR R4 facade",
                "url": base_url,
            },
            "fhirVersion": FHIR_VERSION,
            "format": [FHIR_JSON, "json"],
            "rest": [
                {
                    "mode": "server",
                    "documentation": (
                        "Authenticate with X-API-Key or Authorization: Bearer (API key or OIDC "
                        "access token); every record is scoped to the caller's organization."
                    ),
                    "security": {
                        "cors": False,
                        "description": "API keys or OIDC bearer tokens, as the native API.",
                    },
                    "resource": [
                        _resource(
                            "Patient",
                            ["read", "search-type"],
                            [
                                _param("identifier", "token", "system|value, system| or value."),
                                _COUNT,
                            ],
                            "Created only inside a transaction/batch Bundle; ifNoneExist "
                            "supports identifier=[system|]value.",
                        ),
                        _resource(
                            "Observation",
                            ["read", "search-type"],
                            [
                                _param("patient", "reference", "Patient/<id> or <id>."),
                                _param("code", "token", "LOINC codes, comma-separated (OR)."),
                                _param(
                                    "date",
                                    "date",
                                    "Collection time; prefixes eq, ge, gt, le, lt; repeat to AND.",
                                ),
                                _COUNT,
                            ],
                            "Created only as results of a DiagnosticReport in a transaction/"
                            "batch Bundle. valueQuantity is in the analyte's canonical UCUM "
                            "unit; the value as sent is in the reported-value extension.",
                        ),
                        _resource(
                            "DiagnosticReport",
                            ["read", "search-type"],
                            [_param("patient", "reference", "Patient/<id> or <id>."), _COUNT],
                            "A panel: created only inside a transaction/batch Bundle together "
                            "with its Observations.",
                        ),
                        _resource(
                            "CarePlan",
                            ["read", "search-type"],
                            [
                                _param("patient", "reference", "Patient/<id> or <id>."),
                                _param(
                                    "status",
                                    "token",
                                    "draft, active, completed, revoked, entered-in-error; "
                                    "comma-separated (OR).",
                                ),
                                _COUNT,
                            ],
                            "Treatment plans drafted by the service from its plan rules and "
                            "reviewed by clinicians; one activity per plan item. Read-only "
                            "here: plans are drafted and edited through /api/v1.",
                        ),
                        _resource(
                            "ObservationDefinition",
                            ["search-type"],
                            [],
                            "The organization's active reference ranges, one per analyte.",
                        ),
                    ],
                    "interaction": [{"code": "transaction"}, {"code": "batch"}],
                }
            ],
        }
    )

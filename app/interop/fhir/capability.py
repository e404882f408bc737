"""The CapabilityStatement: exactly what this facade implements, nothing more."""

from __future__ import annotations

from datetime import date
from functools import cache
from typing import Any

from fhir.resources.R4B.capabilitystatement import CapabilityStatement

from app.interop.fhir.outcome import FHIR_JSON
from app.interop.fhir.search_params import CONTROL_PARAMS, INCLUDES, RESOURCE_PARAMS

FHIR_VERSION = "4.0.1"
_RELEASED = date(2026, 1, 1).isoformat()


def _params(kind: str) -> list[dict[str, str]]:
    """The search parameters applied for ``kind``: the same table the search parser reads."""
    return [
        {"name": spec.name, "type": spec.type, "documentation": spec.documentation}
        for spec in (*RESOURCE_PARAMS[kind], *CONTROL_PARAMS)
    ]


def _resource(kind: str, interactions: list[str], documentation: str) -> dict[str, Any]:
    extra: dict[str, Any] = {}
    if kind in INCLUDES:
        extra["searchInclude"] = list(INCLUDES[kind])
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
        "searchParam": _params(kind),
        **extra,
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
                            "Created only inside a transaction/batch Bundle; ifNoneExist "
                            "supports identifier=[system|]value.",
                        ),
                        _resource(
                            "Observation",
                            ["read", "search-type"],
                            "Created only as results of a DiagnosticReport in a transaction/"
                            "batch Bundle. valueQuantity is the value, UCUM unit and "
                            "comparator as the lab reported them; code carries the code the "
                            "lab sent (a LOINC coding, or code.text for a name or local code), "
                            "the LOINC whose property (mass or substance concentration) fits "
                            "that unit, none where the catalog has no such code (zinc in "
                            "umol/L), and our analyte coding. The extension "
                            "https://mineral-labs.example/fhir/StructureDefinition/"
                            "canonical-value (valueQuantity) gives the value in the analyte's "
                            "canonical unit, rounded to as many significant figures as the "
                            "reported value and at least 3 (as canonical.display_value in "
                            "the native API). Search by code finds a result by the code the "
                            "lab sent or any code of its analyte.",
                        ),
                        _resource(
                            "DiagnosticReport",
                            ["read", "search-type"],
                            "A panel: created only inside a transaction/batch Bundle together "
                            "with its Observations.",
                        ),
                        _resource(
                            "CarePlan",
                            ["read", "search-type"],
                            "Treatment plans drafted by the service from its plan rules and "
                            "reviewed by clinicians; one activity per plan item. Read-only "
                            "here: plans are drafted and edited through /api/v1.",
                        ),
                        _resource(
                            "ObservationDefinition",
                            ["search-type"],
                            "The organization's active reference ranges, one per analyte.",
                        ),
                    ],
                    "searchParam": [
                        {
                            "name": name,
                            "type": "token" if name != "_sort" else "string",
                            "documentation": text,
                        }
                        for name, text in (
                            ("_sort", "date or -date (Observation, DiagnosticReport)."),
                            ("_format", "json only; xml and other formats answer 406."),
                        )
                    ],
                    "interaction": [{"code": "transaction"}, {"code": "batch"}],
                }
            ],
        }
    )

"""A Patient entry: its identifiers and demographics as ``PatientCreate``, and the criteria of
a conditional create (``ifNoneExist``) or conditional update (``PUT Patient?...``)."""

from __future__ import annotations

from datetime import date
from typing import Any
from urllib.parse import parse_qsl

from fhir.resources.R4B.bundle import BundleEntry
from fhir.resources.R4B.codeableconcept import CodeableConcept
from fhir.resources.R4B.patient import Patient as FhirPatient
from pydantic import ValidationError

from app.interop.fhir.inbound.units import Conditions, IdentifierToken, PatientUnit, parse_token
from app.interop.fhir.outcome import FhirError, Issue, Outcomes
from app.patients.schemas import PatientCreate

_GENDER = {"female", "male", "other", "unknown"}
V2_IDENTIFIER_TYPE = "http://terminology.hl7.org/CodeSystem/v2-0203"


def patient_unit(index: int, entry: BundleEntry, patient: FhirPatient) -> PatientUnit:
    where = f"Bundle.entry[{index}].resource"
    problems = Outcomes()
    identifiers = []
    identifier_types: list[str | None] = []
    for position, identifier in enumerate(patient.identifier or []):
        if not identifier.system or not identifier.value:
            problems.add(
                "Each identifier needs a system and a value.",
                f"{where}.identifier[{position}]",
                code="required",
            )
        else:
            identifiers.append({"system": identifier.system, "value": identifier.value})
            identifier_types.append(_identifier_type(identifier.type))
    gender = str(patient.gender) if patient.gender else "unknown"
    birth_date = patient.birthDate
    if birth_date is not None and not isinstance(birth_date, date):
        problems.add(
            "birthDate must be a full date (YYYY-MM-DD): age-banded reference ranges need it.",
            f"{where}.birthDate",
        )
    if gender not in _GENDER:
        problems.add("gender is not one of female, male, other, unknown.", f"{where}.gender")
    if_none_exist = _if_none_exist(index, entry)
    problems.raise_if_any()
    try:
        data = PatientCreate.model_validate(
            {
                "identifiers": identifiers,
                "sex": gender,
                "birth_date": birth_date,
                "name": _human_name(patient.name or []),
            }
        )
    except ValidationError as exc:
        fields = {
            "identifiers": "identifier",
            "sex": "gender",
            "birth_date": "birthDate",
            "name": "name",
        }
        raise FhirError(
            422,
            [
                Issue(
                    str(err["msg"]),
                    "invalid",
                    "error",
                    (f"{where}.{fields.get(str(err['loc'][0]), '')}".rstrip("."),),
                )
                for err in exc.errors()
            ],
        ) from exc
    return PatientUnit(
        index=index,
        full_url=entry.fullUrl,
        data=data,
        if_none_exist=if_none_exist,
        identifier_types=tuple(identifier_types),
    )


def _human_name(names: list[Any]) -> dict[str, Any] | None:
    """Patient.name's `official` name (else the first) in our HumanName shape; None when the
    resource names no one."""
    chosen = next((n for n in names if getattr(n, "use", None) == "official"), None)
    chosen = chosen or (names[0] if names else None)
    if chosen is None or not (chosen.family or chosen.given or chosen.text):
        return None
    return {"family": chosen.family, "given": list(chosen.given or [])[:5], "text": chosen.text}


def _identifier_type(concept: CodeableConcept | None) -> str | None:
    """Identifier.type's HL7 table 0203 code (``MR``, ``SS``, ...), if it has one."""
    for coding in (concept.coding if concept else None) or []:
        if coding.system == V2_IDENTIFIER_TYPE and coding.code:
            return str(coding.code).strip().upper() or None
    return None


_CONDITION_PARAMETERS = ("identifier", "birthdate", "gender")


def _if_none_exist(index: int, entry: BundleEntry) -> Conditions | None:
    """The criteria of ``request.ifNoneExist``, or of the query of ``PUT Patient?...``."""
    request = entry.request
    if request is None:
        return None
    if str(request.method) == "PUT":
        query = str(request.url).partition("?")[2]
        where, update = f"Bundle.entry[{index}].request.url", True
    else:
        query = str(request.ifNoneExist or "")
        where, update = f"Bundle.entry[{index}].request.ifNoneExist", False
    if not query:
        return None
    accepted = (
        "identifier=[system|]value (repeatable), optionally with birthdate=YYYY-MM-DD and "
        "gender, joined by '&' (all must match)"
    )

    def refuse(message: str) -> FhirError:
        return FhirError(
            400, [Issue(f"{message}; send {accepted}.", "not-supported", "error", (where,))]
        )

    identifiers: list[IdentifierToken] = []
    birthdate: date | None = None
    gender: str | None = None
    for name, value in parse_qsl(query.lstrip("?"), keep_blank_values=True):
        if name not in _CONDITION_PARAMETERS:
            raise refuse(f"The search parameter {name!r} is not supported in this criterion")
        if not value:
            raise refuse(f"{name} has no value")
        if name == "identifier":
            identifiers.append(parse_token(value))
        elif name == "birthdate":
            try:
                birthdate = date.fromisoformat(value)
            except ValueError:
                raise refuse(f"birthdate {value!r} is not a date (YYYY-MM-DD)") from None
        elif value not in _GENDER:
            raise refuse(f"gender {value!r} is not one of {', '.join(sorted(_GENDER))}")
        else:
            gender = value
    if not identifiers:
        raise refuse("The criterion needs at least one identifier")
    return Conditions(tuple(identifiers), where, birthdate, gender, update)

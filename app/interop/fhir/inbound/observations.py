"""Observation entries (and their components) as native results: value, unit, the lab's range
and flag, and the result status; each with the FHIRPath it came from (``ResultSource``).

EHR shapes accepted: ``valueString`` numbers (``<0.5``, ``0.62 mmol/L``), ``component`` panels
(one result per component), ``dataAbsentReason`` (not stored: a warning in the entry's
response), and a referenceRange in another unit (converted)."""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Any

from fhir.resources.R4B.codeableconcept import CodeableConcept
from fhir.resources.R4B.observation import Observation
from fhir.resources.R4B.reference import Reference

from app.domain import units
from app.domain.catalog import Catalog
from app.domain.errors import DomainError
from app.domain.result_status import FHIR_OBSERVATION_STATUS, FHIR_REFUSED
from app.domain.values import parse_result_value
from app.interop.fhir.inbound.units import ResultSource
from app.interop.fhir.outcome import Issue, Outcomes
from app.interop.fhir.terminology import LOINC, UCUM


def loinc_code(obs: Observation) -> str | None:
    for coding in (obs.code.coding if obs.code else None) or []:
        if coding.system == LOINC and coding.code:
            return str(coding.code)
    return None


def _analyte_code(obs: Observation) -> str | None:
    """A LOINC code, else any code the lab sent, else the code's text (a lab's name)."""
    loinc = loinc_code(obs)
    if loinc is not None:
        return loinc
    for coding in (obs.code.coding if obs.code else None) or []:
        if coding.code:
            return str(coding.code)
    return str(obs.code.text) if obs.code and obs.code.text else None


def _decimal_text(value: Decimal) -> str:
    # "f" writes out every digit: 1e999999999 would be a billion of them (gigabytes). Beyond a
    # bounded exponent the value keeps its exponent form, which the value parser refuses.
    exponent = value.as_tuple().exponent
    if isinstance(exponent, int) and -64 <= exponent <= 64:
        return format(value, "f")
    return str(value)


def _observation_status(
    obs: Observation, where: str, problems: Outcomes, panel_status: str | None
) -> str | None:
    """Observation.status as stored (app.domain.result_status), None where it is the panel's
    own (so a Bundle without per-result statuses hashes as before)."""
    sent = str(obs.status) if obs.status else "final"
    if sent in FHIR_REFUSED:
        problems.add(
            f"status {sent!r} cannot be stored: {FHIR_REFUSED[sent]}.",
            f"{where}.status",
            code="value",
        )
        return None
    status = FHIR_OBSERVATION_STATUS.get(sent)
    if status is None:
        problems.add(
            f"status {sent!r} is not an Observation status; send one of "
            f"{', '.join(FHIR_OBSERVATION_STATUS)}.",
            f"{where}.status",
            code="value",
        )
        return None
    return None if status == panel_status else status


def results_of(
    obs: Observation,
    index: int,
    report_subject: Reference | None,
    problems: Outcomes,
    catalog: Catalog,
    notes: dict[int, list[Issue]],
    *,
    panel_status: str | None = None,
) -> list[tuple[dict[str, Any], ResultSource]]:
    """The native results one Observation gives: its own value, and one per ``component``
    (a panel Observation). An Observation (or component) with ``dataAbsentReason`` and no value
    gives none: it is not stored, and a warning in its entry's response says so."""
    where = f"Bundle.entry[{index}].resource"
    if obs.dataAbsentReason is not None and not _has_value(obs):
        notes.setdefault(index, []).append(_absent_note(obs.dataAbsentReason, where))
        return []
    status = _observation_status(obs, where, problems, panel_status)
    if (
        obs.subject is not None
        and report_subject is not None
        and obs.subject.reference != report_subject.reference
    ):
        problems.add("subject differs from its DiagnosticReport's subject.", f"{where}.subject")
    out: list[tuple[dict[str, Any], ResultSource]] = []
    components = list(obs.component or [])
    if _has_value(obs) or not components:
        analyte = _analyte_code(obs)
        if analyte is None:
            problems.add("code needs a LOINC coding.", f"{where}.code", code="required")
        valued = _valued(obs, analyte, index, "", problems, catalog, status)
        if valued is not None:
            out.append(valued)
    for position, component in enumerate(components):
        path = f".component[{position}]"
        if component.dataAbsentReason is not None and not _has_value(component):
            notes.setdefault(index, []).append(
                _absent_note(component.dataAbsentReason, where + path)
            )
            continue
        code = _component_analyte(component, f"{where}{path}", problems, catalog)
        if code is None:
            continue
        valued = _valued(component, code, index, path, problems, catalog, status)
        if valued is not None:
            out.append(valued)
    return out


def _has_value(element: Any) -> bool:
    return element.valueQuantity is not None or element.valueString is not None


def _absent_note(reason: CodeableConcept, where: str) -> Issue:
    code = next((str(c.code) for c in reason.coding or [] if c.code), None) or str(
        reason.text or "unknown"
    )
    return Issue(
        f"Not stored: this result has no value (dataAbsentReason {code!r}); the other results "
        "of the report were stored. A result without a value is not kept or interpreted.",
        "informational",
        "warning",
        (f"{where}.dataAbsentReason",),
    )


def _component_analyte(
    component: Any, where: str, problems: Outcomes, catalog: Catalog
) -> str | None:
    """A component's code as an analyte of the catalog (a LOINC code or a lab's name)."""
    codings = [c for c in (component.code.coding if component.code else None) or [] if c.code]
    candidates = [str(c.code) for c in codings if c.system == LOINC]
    candidates += [str(c.code) for c in codings if c.system != LOINC]
    if component.code is not None and component.code.text:
        candidates.append(str(component.code.text))
    for candidate in candidates:
        try:
            catalog.resolve(candidate)
        except DomainError:
            continue
        return candidate
    known = ", ".join(
        f"{a.code} (LOINC {' or '.join(c.code for c in a.loinc_codes)})" for a in catalog.all()
    )
    sent = ", ".join(candidates) or "no code"
    problems.add(
        f"component code {sent} is not an analyte this service stores; each component of a "
        f"panel Observation must be one of: {known}.",
        f"{where}.code",
    )
    return None


def _valued(
    element: Any,
    analyte: str | None,
    index: int,
    path: str,
    problems: Outcomes,
    catalog: Catalog,
    status: str | None,
) -> tuple[dict[str, Any], ResultSource] | None:
    """One native result from an Observation or a component (``path``: where it is)."""
    where = f"Bundle.entry[{index}].resource{path}"
    if element.valueQuantity is not None and element.valueQuantity.value is not None:
        value, unit, value_path, unit_path = _quantity_value(element.valueQuantity, where, problems)
    elif element.valueString is not None:
        parsed = _string_value(element, where, problems)
        if parsed is None:
            return None
        value, unit, value_path, unit_path = parsed
    else:
        problems.add(
            "A value is required: valueQuantity (value, UCUM code, optional comparator), "
            "valueString with a number ('0.62', '<0.5', '<0.5 mg/L'), component entries for "
            "a panel, or dataAbsentReason for a result without a value (not stored). A "
            "cancelled or entered-in-error Observation is stored with the value it withdraws.",
            f"{where}.valueQuantity",
            code="required",
        )
        return None
    result: dict[str, Any] = {"analyte": analyte or "", "value": value, "unit": unit}
    lab_range = _lab_range(element, analyte, unit, where, problems, catalog)
    if lab_range:
        result["reference_range"] = lab_range
    flag = _lab_flag(element)
    if flag:
        result["flag"] = flag
    if status is not None:
        result["status"] = status
    return result, ResultSource(index, path, value_path, unit_path)


def _quantity_value(quantity: Any, where: str, problems: Outcomes) -> tuple[str, str, str, str]:
    unit = quantity.code or quantity.unit
    if quantity.system is not None and quantity.system != UCUM:
        problems.add(f"valueQuantity.system must be {UCUM}.", f"{where}.valueQuantity.system")
    if not unit:
        problems.add(
            "valueQuantity.code (UCUM) is required.", f"{where}.valueQuantity.code", code="required"
        )
    comparator = str(quantity.comparator) if quantity.comparator else ""
    return (
        comparator + _decimal_text(Decimal(quantity.value)),
        str(unit or ""),
        ".valueQuantity.value",
        ".valueQuantity.code",
    )


# "<0.5", "0.62", "< 0.5 mg/L": a comparator, a number and optionally a unit after a space.
_STRING_VALUE = re.compile(
    r"^\s*(?P<number>(?:<=|>=|<|>|\u2264|\u2265)?\s*[^\s<>=]+)(?:\s+(?P<unit>\S+))?\s*$"
)


def _string_value(element: Any, where: str, problems: Outcomes) -> tuple[str, str, str, str] | None:
    """valueString as a number (parsed like a native value: app.domain.values): its unit
    follows the number after a space, else is the unit of referenceRange[0].low / high."""
    text = str(element.valueString)
    match = _STRING_VALUE.match(text)
    number = match.group("number").replace(" ", "") if match else text
    try:
        parse_result_value(number)
    except DomainError as exc:
        problems.add(
            f"valueString {text[:64]!r} is not a numeric result ({exc}); send a number, "
            "optionally with a comparator and a UCUM unit ('0.62', '<0.5', '<0.5 mg/L'), or "
            "valueQuantity.",
            f"{where}.valueString",
            code="value",
        )
        return None
    unit = match.group("unit") if match else None
    if unit:
        return number, unit, ".valueString", ".valueString"
    for position, lab in enumerate(element.referenceRange or []):
        for name in ("low", "high"):
            bound = getattr(lab, name)
            if bound is not None and (bound.code or bound.unit):
                return (
                    number,
                    str(bound.code or bound.unit),
                    ".valueString",
                    f".referenceRange[{position}].{name}.code",
                )
    problems.add(
        f"valueString {text[:64]!r} has no unit: write it after the number ('<0.5 mg/L'), "
        "give referenceRange.low/high with a UCUM code, or send valueQuantity.",
        f"{where}.valueString",
        code="required",
    )
    return None


def _lab_range(
    element: Any,
    analyte: str | None,
    unit: str,
    where: str,
    problems: Outcomes,
    catalog: Catalog,
) -> dict[str, Any]:
    """The lab's range (referenceRange[0]) in the unit of the value: a bound in another unit
    of the analyte is converted (app.domain.units.convert)."""
    ranges = element.referenceRange or []
    if not ranges:
        return {}
    lab = ranges[0]
    out: dict[str, Any] = {}
    for name in ("low", "high"):
        quantity = getattr(lab, name)
        if quantity is None or quantity.value is None:
            continue
        value = Decimal(quantity.value)
        bound_unit = quantity.code or quantity.unit
        if bound_unit and bound_unit != unit:
            converted = _converted(value, analyte, str(bound_unit), unit, catalog)
            if converted is None:
                problems.add(
                    f"referenceRange.{name} is in {bound_unit}, which cannot be converted to "
                    f"the value's unit ({unit}) for this analyte; send it in {unit} or another "
                    "unit the analyte accepts.",
                    f"{where}.referenceRange[0].{name}.code",
                )
                continue
            value = converted
        out[name] = value
    if lab.text:
        out["text"] = str(lab.text)
    return out


def _converted(
    value: Decimal, analyte: str | None, from_unit: str, to_unit: str, catalog: Catalog
) -> Decimal | None:
    if analyte is None:
        return None
    try:
        found = catalog.resolve(analyte)
        return units.convert(
            value,
            analyte=found,
            from_unit=catalog.normalize_unit_for(found, from_unit),
            to_unit=catalog.normalize_unit_for(found, to_unit),
        )
    except DomainError:
        return None


def _lab_flag(element: Any) -> str | None:
    for concept in element.interpretation or []:
        for coding in concept.coding or []:
            if coding.code:
                return str(coding.code)[:10]
    return None

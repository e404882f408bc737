"""The patient-context vocabulary (``app/data/patient_context_codes.yaml``): the display and
standard codings of every medication class, condition and diet pattern the plan rules know.

Pure: parsed and validated once, no FastAPI or SQLAlchemy."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from app.domain.data_files import read_yaml
from app.domain.plans.facts import CONDITIONS, DIET_PATTERNS, MEDICATION_CLASSES

DEFAULT_VOCABULARY_PATH = (
    Path(__file__).resolve().parent.parent / "data" / "patient_context_codes.yaml"
)


class VocabularyError(ValueError):
    """The vocabulary data is invalid: a deployment defect, never a caller's mistake."""


@dataclass(frozen=True, slots=True)
class Coding:
    system: str  # a URI: http://www.whocc.no/atc, http://snomed.info/sct, http://loinc.org
    code: str
    display: str
    verified: bool


@dataclass(frozen=True, slots=True)
class Concept:
    code: str  # our code, e.g. "proton-pump-inhibitor"
    display: str
    coding: tuple[Coding, ...]


@dataclass(frozen=True, slots=True)
class Vocabulary:
    medications: Mapping[str, Concept]
    conditions: Mapping[str, Concept]
    diets: Mapping[str, Concept]
    findings: Mapping[str, Concept]  # pregnant, lactating
    egfr: Concept
    egfr_unit: str


def _codings(raw: Any, systems: Mapping[str, str], where: str) -> tuple[Coding, ...]:
    if not isinstance(raw, list):
        raise VocabularyError(f"{where}: coding must be a list")
    out = []
    for entry in raw:
        system = systems.get(entry.get("system"))
        if system is None:
            raise VocabularyError(f"{where}: unknown system {entry.get('system')!r}")
        verified = entry.get("verified")
        if not isinstance(verified, bool):
            raise VocabularyError(f"{where}: every coding must say whether it was verified")
        out.append(
            Coding(
                system=system,
                code=str(entry["code"]),
                display=str(entry["display"]),
                verified=verified,
            )
        )
    return tuple(out)


def _concepts(
    document: dict[str, Any], key: str, expected: tuple[str, ...], systems: Mapping[str, str]
) -> dict[str, Concept]:
    raw = document.get(key)
    if not isinstance(raw, dict) or set(raw) != set(expected):
        raise VocabularyError(f"{key}: must list exactly {sorted(expected)}")
    return {
        code: Concept(
            code=code,
            display=str(raw[code]["display"]),
            coding=_codings(raw[code].get("coding"), systems, f"{key}.{code}"),
        )
        for code in expected
    }


def load_vocabulary(path: Path | None = None) -> Vocabulary:
    source = path or DEFAULT_VOCABULARY_PATH
    document = read_yaml(source, VocabularyError, "vocabulary")
    if not isinstance(document, dict) or not isinstance(document.get("systems"), dict):
        raise VocabularyError(f"{source}: expected a mapping with 'systems'")
    systems: dict[str, str] = document["systems"]
    try:
        egfr = document["egfr"]
        return Vocabulary(
            medications=_concepts(document, "medications", MEDICATION_CLASSES, systems),
            conditions=_concepts(document, "conditions", CONDITIONS, systems),
            diets=_concepts(document, "diets", DIET_PATTERNS, systems),
            findings=_concepts(document, "findings", ("pregnant", "lactating"), systems),
            egfr=Concept(
                code="egfr",
                display=str(egfr["display"]),
                coding=_codings(egfr["coding"], systems, "egfr"),
            ),
            egfr_unit=str(egfr["unit"]),
        )
    except (KeyError, TypeError, AttributeError) as error:
        raise VocabularyError(f"{source}: {error!r}") from error


@cache
def default_vocabulary() -> Vocabulary:
    return load_vocabulary()

"""The analyte catalog: which minerals we understand, their LOINC codes, units and names.

The facts live in ``app/data/analytes.yaml`` (each with its source), not in code, so a
clinician can review them and a correction is a data change. This module parses and validates
that file and answers the questions ingestion asks: "which analyte is 'MAGNESIUM, SERUM'?",
"what is 'mEq/L' in UCUM?", "which LOINC code fits a result in umol/L?".
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from functools import cache
from pathlib import Path
from typing import Any

from app.domain import units
from app.domain.data_files import read_yaml_mapping
from app.domain.errors import DomainError, UnknownAnalyteError, UnknownUnitError
from app.domain.types import Specimen

DEFAULT_CATALOG_PATH = Path(__file__).resolve().parent.parent / "data" / "analytes.yaml"

LOINC_PROPERTIES = ("mass", "molar")
# LOINC System axis values used in the catalog, and which of our specimens each covers.
LOINC_SPECIMENS: Mapping[str, frozenset[str]] = {
    "Ser/Plas": frozenset({Specimen.SERUM.value, Specimen.PLASMA.value}),
    "Bld": frozenset({Specimen.WHOLE_BLOOD.value}),
    "RBC": frozenset({Specimen.RBC.value}),
}
_LOINC_CODE = re.compile(r"^(\d{1,7})-(\d)$")


class CatalogError(ValueError):
    """The catalog data is invalid: a deployment defect, never a caller's mistake."""


@dataclass(frozen=True, slots=True)
class LoincCode:
    """One LOINC term for an analyte; ``property`` is 'mass' or 'molar'."""

    code: str
    property: str
    specimen: str
    display: str
    source: str = ""


@dataclass(frozen=True, slots=True)
class Analyte:
    """A catalog entry. Units are UCUM codes; ``molar_mass`` is in g/mol."""

    code: str
    display: str
    loinc_codes: tuple[LoincCode, ...]
    molar_mass: Decimal | None
    valence: int | None
    canonical_unit: str
    accepted_units: tuple[str, ...]
    specimens: tuple[str, ...]
    synonyms: tuple[str, ...]
    source: str
    molar_mass_source: str = ""


def normalize_name(name: str) -> str:
    """Fold a lab's analyte name for lookup: case, runs of whitespace, spacing around commas."""
    collapsed = re.sub(r"\s*,\s*", ", ", name.strip())
    return re.sub(r"\s+", " ", collapsed).casefold()


def loinc_check_digit(number: str) -> int:
    """The LOINC mod-10 check digit of the part before the hyphen (Luhn, as LOINC specifies)."""
    total = 0
    for position, char in enumerate(reversed(number), start=1):
        digit = int(char)
        if position % 2 == 1:
            digit *= 2
            digit = digit - 9 if digit > 9 else digit
        total += digit
    return (10 - total % 10) % 10


def _is_valid_loinc(code: str) -> bool:
    match = _LOINC_CODE.match(code)
    if match is None:
        return False
    return loinc_check_digit(match.group(1)) == int(match.group(2))


class Catalog:
    """An immutable, validated set of analytes with lookup indexes."""

    def __init__(self, analytes: Iterable[Analyte], unit_aliases: Mapping[str, str]) -> None:
        self._analytes = tuple(analytes)
        self._unit_aliases = dict(unit_aliases)
        self._by_code: dict[str, Analyte] = {}
        self._by_loinc: dict[str, Analyte] = {}
        self._by_name: dict[str, Analyte] = {}
        for analyte in self._analytes:
            _validate_analyte(analyte)
            self._index(analyte)
        self._validate_aliases()

    def _index(self, analyte: Analyte) -> None:
        if analyte.code in self._by_code:
            raise CatalogError(f"duplicate analyte code {analyte.code!r}")
        self._by_code[analyte.code] = analyte
        for loinc in analyte.loinc_codes:
            other = self._by_loinc.get(loinc.code)
            if other is not None:
                raise CatalogError(
                    f"LOINC {loinc.code} is listed under both {other.code!r} and {analyte.code!r}"
                )
            self._by_loinc[loinc.code] = analyte
        names = [analyte.code, analyte.display, *analyte.synonyms]
        names += [term for loinc in analyte.loinc_codes for term in (loinc.code, loinc.display)]
        for name in names:
            key = normalize_name(name)
            other = self._by_name.get(key)
            if other is not None and other is not analyte:
                raise CatalogError(
                    f"name {name!r} would resolve to both {other.code!r} and {analyte.code!r}"
                )
            self._by_name[key] = analyte

    def _validate_aliases(self) -> None:
        for alias, target in self._unit_aliases.items():
            if not units.is_known_unit(target):
                raise CatalogError(f"unit alias {alias!r} points to unknown unit {target!r}")
            if units.is_known_unit(alias):
                raise CatalogError(f"unit alias {alias!r} is itself a UCUM code")

    @property
    def unit_aliases(self) -> Mapping[str, str]:
        return dict(self._unit_aliases)

    def all(self) -> tuple[Analyte, ...]:
        return self._analytes

    def codes(self) -> tuple[str, ...]:
        return tuple(analyte.code for analyte in self._analytes)

    def get(self, code: str) -> Analyte:
        """The analyte with this catalog code (exact match)."""
        try:
            return self._by_code[code]
        except KeyError:
            raise UnknownAnalyteError(code, known=self.codes()) from None

    def by_loinc(self, code: str) -> Analyte:
        """The analyte a LOINC code belongs to."""
        try:
            return self._by_loinc[code.strip()]
        except KeyError:
            raise UnknownAnalyteError(code, known=self.codes()) from None

    def resolve(self, name_or_code: str) -> Analyte:
        """Our code, a LOINC code or display, or a lab synonym; case- and spacing-insensitive."""
        try:
            return self._by_name[normalize_name(name_or_code)]
        except KeyError:
            raise UnknownAnalyteError(name_or_code, known=self.codes()) from None

    def normalize_unit(self, unit: str) -> str:
        """The UCUM code for a unit as a lab spelled it (``'mEq/L'`` -> ``'meq/L'``)."""
        compact = re.sub(r"\s+", "", unit)
        if units.is_known_unit(compact):
            return compact
        target = self._unit_aliases.get(compact)
        if target is None:
            raise UnknownUnitError(unit, accepted=units.KNOWN_UNITS)
        return target

    def normalize_unit_for(self, analyte: Analyte, unit: str) -> str:
        """``normalize_unit`` for a result of ``analyte``: an unknown unit is reported with the
        units this analyte accepts, the only ones the sender can usefully choose from."""
        try:
            return self.normalize_unit(unit)
        except UnknownUnitError:
            raise UnknownUnitError(unit, accepted=analyte.accepted_units) from None

    def loinc_for(
        self,
        analyte: Analyte,
        unit: str,
        *,
        specimen: str | None = None,
        prefer: str | None = None,
    ) -> str | None:
        """The LOINC code for a result of ``analyte`` in ``unit`` (UCUM), or None.

        The code's property must match the unit's: mass units (mg/dL, ug/L, ng/mL, ...) take a
        [Mass/volume] code, substance units (mmol/L, umol/L) and meq/L a [Moles/volume] code.
        Where the catalog lists no code of that property (zinc has no verified molar code),
        the answer is None: no LOINC rather than one a consumer reading by code would misread
        (a zinc value in umol/L under a mass code reads ~6.5x off). ``prefer`` (the code the
        lab sent) wins when it is one of the fitting codes; ``specimen`` (our vocabulary, e.g.
        'whole-blood') then prefers a code for that LOINC system; the catalog's order decides
        otherwise.
        """
        units.ensure_applicable(analyte, unit)
        wanted = "mass" if units.unit_kind(unit) == "mass" else "molar"
        candidates = [code for code in analyte.loinc_codes if code.property == wanted]
        if not candidates:
            return None
        if prefer is not None:
            for code in candidates:
                if code.code == prefer.strip():
                    return code.code
        if specimen is not None:
            matching = [c for c in candidates if specimen in LOINC_SPECIMENS.get(c.specimen, ())]
            candidates = matching or candidates
        return candidates[0].code

    def loinc_code(self, code: str) -> LoincCode | None:
        """The catalog's entry for a LOINC code (its property, specimen and display), if any."""
        analyte = self._by_loinc.get(code.strip())
        if analyte is None:
            return None
        return next(c for c in analyte.loinc_codes if c.code == code.strip())


def _validate_analyte(analyte: Analyte) -> None:
    where = f"analyte {analyte.code!r}"
    _validate_codes(analyte, where)
    _validate_units(analyte, where)


def _validate_codes(analyte: Analyte, where: str) -> None:
    """The code, the specimens and the LOINC codes (checked first: the error names one)."""
    if not re.fullmatch(r"[a-z][a-z0-9-]*", analyte.code):
        raise CatalogError(f"{where}: code must be lower-case kebab-case")
    if not analyte.loinc_codes:
        raise CatalogError(f"{where}: at least one LOINC code is required")
    if not analyte.specimens:
        raise CatalogError(f"{where}: at least one specimen is required")
    known_specimens = {specimen.value for specimen in Specimen}
    for specimen in analyte.specimens:
        if specimen not in known_specimens:
            raise CatalogError(f"{where}: unknown specimen {specimen!r}")
    for loinc in analyte.loinc_codes:
        if not _is_valid_loinc(loinc.code):
            raise CatalogError(f"{where}: {loinc.code!r} is not a LOINC code (check digit)")
        if loinc.property not in LOINC_PROPERTIES:
            raise CatalogError(f"{where}: LOINC {loinc.code} has unknown property")
        if loinc.specimen not in LOINC_SPECIMENS:
            raise CatalogError(f"{where}: LOINC {loinc.code} has unknown specimen")


def _validate_units(analyte: Analyte, where: str) -> None:
    """The units, and what converting between them needs (molar mass, valence)."""
    for unit in analyte.accepted_units:
        if not units.is_known_unit(unit):
            raise CatalogError(f"{where}: accepted unit {unit!r} is not a supported UCUM code")
    if analyte.canonical_unit not in analyte.accepted_units:
        raise CatalogError(f"{where}: canonical unit must be one of the accepted units")
    if analyte.molar_mass is not None and not analyte.molar_mass > 0:
        raise CatalogError(f"{where}: molar mass must be positive")
    if ("meq/L" in analyte.accepted_units) != (analyte.valence is not None):
        raise CatalogError(f"{where}: valence must be set exactly when meq/L is accepted")
    if analyte.valence is not None and analyte.valence < 1:
        raise CatalogError(f"{where}: valence must be a positive integer")
    for unit in analyte.accepted_units:
        try:
            units.conversion_factor(analyte, unit, analyte.canonical_unit)
        except DomainError as error:
            raise CatalogError(f"{where}: {error}") from error


# --- YAML loading -------------------------------------------------------------------------


def load_catalog(path: Path | None = None) -> Catalog:
    """Parse and validate a catalog file (the packaged one by default)."""
    source = path or DEFAULT_CATALOG_PATH
    document = read_yaml_mapping(source, CatalogError, "catalog")
    raw_analytes = document.get("analytes")
    if not isinstance(raw_analytes, list) or not raw_analytes:
        raise CatalogError(f"{source}: 'analytes' must be a non-empty list")
    aliases = document.get("unit_aliases") or {}
    if not isinstance(aliases, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in aliases.items()
    ):
        raise CatalogError(f"{source}: 'unit_aliases' must map strings to strings")
    analytes = []
    for index, entry in enumerate(raw_analytes):
        try:
            analytes.append(_parse_analyte(entry))
        except CatalogError as error:
            raise CatalogError(f"{source}: analytes[{index}]: {error}") from error
    try:
        return Catalog(analytes, aliases)
    except CatalogError as error:
        raise CatalogError(f"{source}: {error}") from error


@cache
def default_catalog() -> Catalog:
    """The packaged catalog, loaded once per process."""
    return load_catalog()


def _parse_analyte(entry: Any) -> Analyte:
    if not isinstance(entry, dict):
        raise CatalogError("each analyte must be a mapping")
    code = _text(entry, "code")
    try:
        return Analyte(
            code=code,
            display=_text(entry, "display"),
            loinc_codes=tuple(_parse_loinc(item) for item in _list(entry, "loinc")),
            molar_mass=_decimal_or_none(entry, "molar_mass"),
            valence=_int_or_none(entry, "valence"),
            canonical_unit=_text(entry, "canonical_unit"),
            accepted_units=tuple(_strings(entry, "accepted_units")),
            specimens=tuple(_strings(entry, "specimens")),
            synonyms=tuple(_strings(entry, "synonyms")),
            source=_text(entry, "source"),
            molar_mass_source=_text(entry, "molar_mass_source"),
        )
    except CatalogError as error:
        raise CatalogError(f"({code}) {error}") from error


def _parse_loinc(item: Any) -> LoincCode:
    if not isinstance(item, dict):
        raise CatalogError("each LOINC entry must be a mapping")
    return LoincCode(
        code=_text(item, "code"),
        property=_text(item, "property"),
        specimen=_text(item, "specimen"),
        display=_text(item, "display"),
        source=_text(item, "source"),
    )


def _text(entry: Mapping[str, Any], key: str) -> str:
    value = entry.get(key)
    if not isinstance(value, str) or not value.strip():
        raise CatalogError(f"{key!r} must be a non-empty string")
    return value.strip()


def _list(entry: Mapping[str, Any], key: str) -> list[Any]:
    value = entry.get(key)
    if not isinstance(value, list) or not value:
        raise CatalogError(f"{key!r} must be a non-empty list")
    return value


def _strings(entry: Mapping[str, Any], key: str) -> list[str]:
    values = _list(entry, key)
    if not all(isinstance(value, str) and value.strip() for value in values):
        raise CatalogError(f"{key!r} must contain only non-empty strings")
    return [value.strip() for value in values]


def _decimal_or_none(entry: Mapping[str, Any], key: str) -> Decimal | None:
    value = entry.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        # A YAML float would already have lost the exact decimal; insist on a quoted string.
        raise CatalogError(f'{key!r} must be a quoted decimal string such as "24.305"')
    try:
        number = Decimal(value)
    except InvalidOperation:
        raise CatalogError(f"{key!r} is not a decimal: {value!r}") from None
    if not number.is_finite():
        raise CatalogError(f"{key!r} must be finite")
    return number


def _int_or_none(entry: Mapping[str, Any], key: str) -> int | None:
    value = entry.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise CatalogError(f"{key!r} must be an integer or null")
    return value

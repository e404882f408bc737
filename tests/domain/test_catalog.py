from __future__ import annotations

import copy
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from app.domain import units
from app.domain.catalog import (
    DEFAULT_CATALOG_PATH,
    Analyte,
    Catalog,
    CatalogError,
    default_catalog,
    load_catalog,
    loinc_check_digit,
    normalize_name,
)
from app.domain.errors import UnitNotApplicableError, UnknownAnalyteError, UnknownUnitError
from app.domain.types import Specimen

CATALOG = default_catalog()
EXPECTED_CODES = {
    "magnesium",
    "magnesium-rbc",
    "calcium",
    "calcium-ionized",
    "zinc",
    "iron",
    "ferritin",
    "copper",
}


# --- the packaged data ---------------------------------------------------------------------


def test_packaged_catalog_has_exactly_the_eight_mineral_analytes() -> None:
    assert set(CATALOG.codes()) == EXPECTED_CODES
    assert len(CATALOG.all()) == 8


def test_default_catalog_is_loaded_once_and_shared() -> None:
    assert default_catalog() is default_catalog()


@pytest.mark.parametrize(
    ("code", "loinc"),
    [
        ("magnesium", {("19123-9", "mass"), ("2601-3", "molar")}),
        ("magnesium-rbc", {("26746-8", "mass"), ("2597-3", "molar")}),
        ("calcium", {("17861-6", "mass"), ("2000-8", "molar")}),
        ("calcium-ionized", {("17864-0", "mass"), ("1995-0", "molar"), ("1994-3", "molar")}),
        ("zinc", {("5763-8", "mass")}),
        ("iron", {("2498-4", "mass"), ("14798-3", "molar")}),
        ("ferritin", {("2276-4", "mass"), ("20567-4", "mass")}),
        ("copper", {("5631-7", "mass"), ("14665-4", "molar")}),
    ],
)
def test_each_analyte_carries_its_loinc_codes_with_property(
    code: str, loinc: set[tuple[str, str]]
) -> None:
    assert {(term.code, term.property) for term in CATALOG.get(code).loinc_codes} == loinc


def test_2601_3_is_serum_magnesium_in_moles_not_zinc() -> None:
    # Community code lists label 2601-3 as zinc; LOINC says it is magnesium [Moles/volume].
    owner = CATALOG.by_loinc("2601-3")
    assert owner.code == "magnesium"
    term = next(t for t in owner.loinc_codes if t.code == "2601-3")
    assert term.display == "Magnesium [Moles/volume] in Serum or Plasma"
    assert "2601-3" not in {t.code for t in CATALOG.get("zinc").loinc_codes}


@pytest.mark.parametrize(
    ("code", "molar_mass", "valence", "canonical"),
    [
        ("magnesium", Decimal("24.305"), 2, "mmol/L"),
        ("magnesium-rbc", Decimal("24.305"), None, "mmol/L"),
        ("calcium", Decimal("40.078"), 2, "mmol/L"),
        ("calcium-ionized", Decimal("40.078"), 2, "mmol/L"),
        ("zinc", Decimal("65.38"), None, "umol/L"),
        ("iron", Decimal("55.845"), None, "umol/L"),
        ("copper", Decimal("63.546"), None, "umol/L"),
        ("ferritin", None, None, "ug/L"),
    ],
)
def test_molar_mass_valence_and_canonical_unit_match_the_clinical_facts(
    code: str, molar_mass: Decimal | None, valence: int | None, canonical: str
) -> None:
    subject = CATALOG.get(code)
    assert subject.molar_mass == molar_mass
    assert subject.valence == valence
    assert subject.canonical_unit == canonical


@pytest.mark.parametrize(
    ("code", "accepted"),
    [
        ("magnesium", {"mg/dL", "mmol/L", "meq/L", "mg/L"}),
        ("calcium", {"mg/dL", "mmol/L", "meq/L", "mg/L"}),
        ("calcium-ionized", {"mmol/L", "mg/dL", "meq/L"}),
        ("zinc", {"ug/dL", "umol/L", "ug/L", "mg/L", "ug/mL"}),
        ("iron", {"ug/dL", "umol/L", "ug/L", "mg/L"}),
        ("copper", {"ug/dL", "umol/L", "ug/L", "mg/L", "ug/mL"}),
        ("ferritin", {"ug/L", "ng/mL"}),
        ("magnesium-rbc", {"mg/dL", "mmol/L"}),
    ],
)
def test_accepted_units_per_analyte(code: str, accepted: set[str]) -> None:
    assert set(CATALOG.get(code).accepted_units) == accepted


def test_specimens_use_the_shared_specimen_vocabulary() -> None:
    known = {specimen.value for specimen in Specimen}
    for subject in CATALOG.all():
        assert set(subject.specimens) <= known
    assert CATALOG.get("magnesium-rbc").specimens == ("rbc",)
    assert "whole-blood" in CATALOG.get("calcium-ionized").specimens


def test_every_analyte_and_loinc_code_cites_a_source() -> None:
    for subject in CATALOG.all():
        assert subject.source.strip()
        assert subject.molar_mass_source.strip()
        for term in subject.loinc_codes:
            assert term.source.strip(), term.code


@pytest.mark.parametrize(("number", "check"), [("2601", 3), ("19123", 9), ("14798", 3)])
def test_loinc_check_digit_matches_published_codes(number: str, check: int) -> None:
    assert loinc_check_digit(number) == check


# --- resolving names -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "code"),
    [
        ("magnesium", "magnesium"),
        ("Mg", "magnesium"),
        ("MAGNESIUM", "magnesium"),
        ("MAGNESIUM, SERUM", "magnesium"),
        ("  magnesium ,   serum ", "magnesium"),
        ("Magnesium,Serum", "magnesium"),
        ("Magnesium [Mass/volume] in Serum or Plasma", "magnesium"),
        ("19123-9", "magnesium"),
        ("Ca", "calcium"),
        ("CALCIUM, TOTAL", "calcium"),
        ("iCa", "calcium-ionized"),
        ("ICA", "calcium-ionized"),
        ("Calcium.ionized [Moles/volume] in Blood", "calcium-ionized"),
        ("Zn", "zinc"),
        ("ZINC, SERUM", "zinc"),
        ("Fe", "iron"),
        ("IRON, SERUM", "iron"),
        ("Cu", "copper"),
        ("FERR", "ferritin"),
        ("20567-4", "ferritin"),
        ("RBC MAGNESIUM", "magnesium-rbc"),
        ("magnesium-rbc", "magnesium-rbc"),
    ],
)
def test_resolve_accepts_codes_loinc_and_lab_synonyms_case_insensitively(
    name: str, code: str
) -> None:
    assert CATALOG.resolve(name).code == code


def test_unknown_name_raises_with_the_known_codes() -> None:
    with pytest.raises(UnknownAnalyteError) as caught:
        CATALOG.resolve("unobtainium")
    assert caught.value.name == "unobtainium"
    assert set(caught.value.known) == EXPECTED_CODES
    assert "unobtainium" in str(caught.value)
    assert "magnesium" in str(caught.value)


def test_get_is_exact_and_rejects_synonyms() -> None:
    assert CATALOG.get("zinc").code == "zinc"
    with pytest.raises(UnknownAnalyteError):
        CATALOG.get("Zn")


def test_by_loinc_finds_the_owner_and_rejects_unknown_codes() -> None:
    assert CATALOG.by_loinc(" 5631-7 ").code == "copper"
    with pytest.raises(UnknownAnalyteError):
        CATALOG.by_loinc("2507-2")


def test_normalize_name_folds_case_spacing_and_commas() -> None:
    assert normalize_name("  CALCIUM ,TOTAL\t") == "calcium, total"


# --- units ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spelling", "ucum"),
    [
        ("mEq/L", "meq/L"),
        ("MEQ/L", "meq/L"),
        ("\u00b5g/dL", "ug/dL"),
        ("\u03bcg/dL", "ug/dL"),
        ("mcg/dL", "ug/dL"),
        ("ug/dl", "ug/dL"),
        ("\u00b5mol/L", "umol/L"),
        ("ng/ml", "ng/mL"),
        ("mg/dl", "mg/dL"),
        ("MG/DL", "mg/dL"),
        ("mmol/l", "mmol/L"),
        ("mcg/mL", "ug/mL"),
        ("mg / dL", "mg/dL"),
        ("mmol/L", "mmol/L"),
        (" umol/L ", "umol/L"),
    ],
)
def test_lab_unit_spellings_normalise_to_ucum(spelling: str, ucum: str) -> None:
    assert CATALOG.normalize_unit(spelling) == ucum


@pytest.mark.parametrize("spelling", ["Mg/dL", "MMOL/l", "g/L", "mEq", "IU/L", ""])
def test_unlisted_spellings_are_rejected_rather_than_case_folded(spelling: str) -> None:
    with pytest.raises(UnknownUnitError) as caught:
        CATALOG.normalize_unit(spelling)
    assert "mg/dL" in str(caught.value)
    assert "meq/L" in caught.value.accepted


def test_every_alias_points_to_a_unit_some_analyte_accepts() -> None:
    accepted = {unit for subject in CATALOG.all() for unit in subject.accepted_units}
    assert set(CATALOG.unit_aliases.values()) <= accepted


@pytest.mark.parametrize(
    ("code", "unit", "specimen", "loinc"),
    [
        ("magnesium", "mg/dL", None, "19123-9"),
        ("magnesium", "mg/L", None, "19123-9"),
        ("magnesium", "mmol/L", None, "2601-3"),
        ("magnesium", "meq/L", None, "2601-3"),
        ("calcium", "mmol/L", None, "2000-8"),
        ("calcium-ionized", "mmol/L", None, "1995-0"),
        ("calcium-ionized", "mmol/L", "serum", "1995-0"),
        ("calcium-ionized", "mmol/L", "whole-blood", "1994-3"),
        ("calcium-ionized", "mg/dL", "whole-blood", "17864-0"),
        ("zinc", "ug/dL", None, "5763-8"),
        # No verified molar code for zinc: none rather than the mass code (read ~6.5x off).
        ("zinc", "umol/L", None, None),
        ("iron", "umol/L", None, "14798-3"),
        ("iron", "ug/dL", None, "2498-4"),
        ("copper", "umol/L", None, "14665-4"),
        ("ferritin", "ng/mL", None, "2276-4"),
        ("magnesium-rbc", "mmol/L", "rbc", "2597-3"),
        ("magnesium-rbc", "mg/dL", None, "26746-8"),
    ],
)
def test_loinc_for_picks_the_code_whose_property_matches_the_unit(
    code: str, unit: str, specimen: str | None, loinc: str | None
) -> None:
    assert CATALOG.loinc_for(CATALOG.get(code), unit, specimen=specimen) == loinc


@pytest.mark.parametrize("analyte", CATALOG.all(), ids=CATALOG.codes())
def test_every_loinc_given_for_a_unit_has_that_units_property_or_there_is_none(
    analyte: Analyte,
) -> None:
    for unit in analyte.accepted_units:
        loinc = CATALOG.loinc_for(analyte, unit)
        wanted = "mass" if units.unit_kind(unit) == "mass" else "molar"
        entry = CATALOG.loinc_code(loinc) if loinc else None
        if entry is None:
            assert all(c.property != wanted for c in analyte.loinc_codes), (analyte.code, unit)
        else:
            assert entry.property == wanted, (analyte.code, unit, loinc)


@pytest.mark.parametrize(
    ("code", "unit", "sent", "loinc"),
    [
        ("ferritin", "ng/mL", "20567-4", "20567-4"),  # the lab's code fits: kept
        ("calcium", "mg/dL", "17861-6", "17861-6"),
        ("calcium", "mg/dL", "2000-8", "17861-6"),  # a molar code on a mass value: not kept
        ("calcium", "mg/dL", "Calcium, serum", "17861-6"),
        ("zinc", "umol/L", "5763-8", None),  # the lab's mass code on a molar value
    ],
)
def test_loinc_for_prefers_the_code_the_lab_sent_only_when_its_property_fits(
    code: str, unit: str, sent: str, loinc: str | None
) -> None:
    assert CATALOG.loinc_for(CATALOG.get(code), unit, prefer=sent) == loinc


def test_loinc_code_describes_a_catalog_loinc_and_knows_no_other() -> None:
    entry = CATALOG.loinc_code("17861-6")
    assert entry is not None
    assert (entry.property, entry.specimen) == ("mass", "Ser/Plas")
    assert CATALOG.loinc_code("Calcium") is None


def test_loinc_for_rejects_units_the_analyte_does_not_take() -> None:
    with pytest.raises(UnitNotApplicableError):
        CATALOG.loinc_for(CATALOG.get("ferritin"), "mmol/L")
    with pytest.raises(UnknownUnitError):
        CATALOG.loinc_for(CATALOG.get("zinc"), "mEq/L")


@given(name=st.sampled_from([s for a in CATALOG.all() for s in a.synonyms]), data=st.data())
def test_any_synonym_resolves_whatever_its_case_and_padding(name: str, data: st.DataObject) -> None:
    expected = next(a for a in CATALOG.all() if name in a.synonyms)
    flips = data.draw(st.lists(st.booleans(), min_size=len(name), max_size=len(name)))
    mangled = "".join(c.upper() if flip else c.lower() for c, flip in zip(name, flips, strict=True))
    padding = data.draw(st.sampled_from(["", " ", "\t", "  \n"]))
    assert CATALOG.resolve(f"{padding}{mangled}{padding}") is expected


# --- validation of catalog files -----------------------------------------------------------


def packaged_document() -> dict[str, Any]:
    loaded = yaml.safe_load(DEFAULT_CATALOG_PATH.read_text(encoding="utf-8"))
    assert isinstance(loaded, dict)
    return copy.deepcopy(loaded)


def write(tmp_path: Path, document: Any) -> Path:
    path = tmp_path / "analytes.yaml"
    path.write_text(yaml.safe_dump(document, allow_unicode=True), encoding="utf-8")
    return path


def entry(document: dict[str, Any], code: str) -> dict[str, Any]:
    found: dict[str, Any] = next(a for a in document["analytes"] if a["code"] == code)
    return found


def test_round_tripped_packaged_document_loads_cleanly(tmp_path: Path) -> None:
    catalog = load_catalog(write(tmp_path, packaged_document()))
    assert set(catalog.codes()) == EXPECTED_CODES


def test_canonical_unit_outside_accepted_units_is_rejected(tmp_path: Path) -> None:
    document = packaged_document()
    entry(document, "zinc")["canonical_unit"] = "mmol/L"
    with pytest.raises(CatalogError, match="canonical unit"):
        load_catalog(write(tmp_path, document))


def test_synonym_shared_by_two_analytes_is_rejected(tmp_path: Path) -> None:
    document = packaged_document()
    entry(document, "zinc")["synonyms"].append("mg")  # "Mg" already means magnesium
    with pytest.raises(CatalogError, match="both"):
        load_catalog(write(tmp_path, document))


def test_loinc_code_with_wrong_check_digit_is_rejected(tmp_path: Path) -> None:
    document = packaged_document()
    entry(document, "zinc")["loinc"][0]["code"] = "5763-9"
    with pytest.raises(CatalogError, match="check digit"):
        load_catalog(write(tmp_path, document))


def test_loinc_code_listed_under_two_analytes_is_rejected(tmp_path: Path) -> None:
    document = packaged_document()
    entry(document, "zinc")["loinc"].append(copy.deepcopy(entry(document, "magnesium")["loinc"][1]))
    with pytest.raises(CatalogError, match="2601-3"):
        load_catalog(write(tmp_path, document))


def test_molar_mass_written_as_yaml_float_is_rejected(tmp_path: Path) -> None:
    document = packaged_document()
    entry(document, "zinc")["molar_mass"] = 65.38
    with pytest.raises(CatalogError, match="quoted decimal"):
        load_catalog(write(tmp_path, document))


def test_molar_unit_without_molar_mass_is_rejected(tmp_path: Path) -> None:
    document = packaged_document()
    entry(document, "ferritin")["accepted_units"].append("umol/L")
    with pytest.raises(CatalogError, match="ferritin"):
        load_catalog(write(tmp_path, document))


def test_meq_without_valence_is_rejected(tmp_path: Path) -> None:
    document = packaged_document()
    entry(document, "magnesium")["valence"] = None
    with pytest.raises(CatalogError, match="valence"):
        load_catalog(write(tmp_path, document))


def test_unknown_specimen_is_rejected(tmp_path: Path) -> None:
    document = packaged_document()
    entry(document, "iron")["specimens"] = ["urine"]
    with pytest.raises(CatalogError, match="specimen"):
        load_catalog(write(tmp_path, document))


def test_alias_to_unknown_unit_is_rejected(tmp_path: Path) -> None:
    document = packaged_document()
    document["unit_aliases"]["mg%"] = "mg/100mL"
    with pytest.raises(CatalogError, match="mg%"):
        load_catalog(write(tmp_path, document))


def test_missing_field_error_names_the_entry_and_field(tmp_path: Path) -> None:
    document = packaged_document()
    del entry(document, "copper")["canonical_unit"]
    with pytest.raises(CatalogError, match=r"analytes\[\d+\].*copper.*canonical_unit"):
        load_catalog(write(tmp_path, document))


def test_unreadable_or_malformed_file_raises_catalog_error(tmp_path: Path) -> None:
    with pytest.raises(CatalogError, match="cannot read"):
        load_catalog(tmp_path / "missing.yaml")
    broken = tmp_path / "broken.yaml"
    broken.write_text("analytes: [\n", encoding="utf-8")
    with pytest.raises(CatalogError, match="cannot read"):
        load_catalog(broken)
    with pytest.raises(CatalogError, match="non-empty list"):
        load_catalog(write(tmp_path, {"analytes": []}))


def test_catalog_can_be_built_from_dataclasses_and_is_validated() -> None:
    zinc = CATALOG.get("zinc")
    assert Catalog([zinc], {}).resolve("zn") is zinc
    with pytest.raises(CatalogError, match="duplicate"):
        Catalog([zinc, zinc], {})

"""The inbound parser as units of work, without HTTP or a database: each entry becomes a unit
or an error whose FHIRPath was recorded where it was found."""

from __future__ import annotations

from fhir.resources.R4B.diagnosticreport import DiagnosticReport

from app.domain.catalog import default_catalog
from app.interop.fhir.inbound import parse_bundle
from tests.interop.fhir.builders import (
    MINERAL_PANEL,
    bundle,
    new_accession,
    new_mrn,
    panel_bundle,
    patient_entry,
    report_entries,
    urn,
)


def test_a_panel_bundle_is_one_patient_unit_and_one_report_unit() -> None:
    parsed = parse_bundle(panel_bundle().encode(), default_catalog())

    assert parsed.failures == {}
    assert [unit.index for unit in parsed.patients] == [0]
    [report] = parsed.reports
    assert report.index == 1
    assert report.observation_indexes == [2, 3, 4, 5]
    # One source per native result, each naming the Observation entry it came from.
    assert [source.entry for source in report.sources] == [2, 3, 4, 5]


def test_native_field_paths_map_back_to_the_entry_they_came_from() -> None:
    [report] = parse_bundle(panel_bundle().encode(), default_catalog()).reports

    assert report.expression_for("body.results[1].unit") == (
        "Bundle.entry[3].resource.valueQuantity.code"
    )
    assert report.expression_at(("results", 0, "value")) == (
        "Bundle.entry[2].resource.valueQuantity.value"
    )
    assert report.expression_for("results.2.flag") == "Bundle.entry[4].resource.interpretation[0]"
    assert report.expression_for("body.collected_at") == (
        "Bundle.entry[1].resource.effectiveDateTime"
    )
    # A result position the report does not have names the report itself.
    assert report.expression_for("results[9].value") == "Bundle.entry[1].resource"
    assert report.expression_for("") == "Bundle.entry[1].resource"


def test_a_failed_observation_fails_its_report_and_every_sibling_with_the_same_error() -> None:
    patient_url = urn()
    entries = [patient_entry(patient_url, mrn=new_mrn())]
    entries += report_entries(patient_url, MINERAL_PANEL[:2], accession=new_accession())
    request = entries[2].request
    assert request is not None
    request.method = "DELETE"  # the first Observation's request is refused
    parsed = parse_bundle(bundle(entries, "batch").encode(), default_catalog())

    assert parsed.reports == []
    assert set(parsed.failures) == {1, 2, 3}
    assert parsed.failures[1] is parsed.failures[2] is parsed.failures[3]
    [issue] = parsed.failures[1].issues
    assert issue.expression == ("Bundle.entry[2].request.method",)
    assert [unit.index for unit in parsed.patients] == [0]


def test_an_observation_listed_by_two_reports_fails_the_second_report() -> None:
    patient_url = urn()
    entries = [patient_entry(patient_url, mrn=new_mrn())]
    entries += report_entries(patient_url, MINERAL_PANEL[:1], accession=new_accession())
    second = report_entries(patient_url, MINERAL_PANEL[:1], accession=new_accession())[0]
    first_report, second_report = entries[1].resource, second.resource
    assert isinstance(first_report, DiagnosticReport)
    assert isinstance(second_report, DiagnosticReport)
    second_report.result = first_report.result  # the same Observation entry
    entries.append(second)
    parsed = parse_bundle(bundle(entries, "batch").encode(), default_catalog())

    [issue] = parsed.failures[3].issues
    assert issue.diagnostics == "entry[2] is a result of entry[1]"
    assert issue.expression == ("Bundle.entry[3].resource.result",)
    assert [unit.index for unit in parsed.reports] == [1]

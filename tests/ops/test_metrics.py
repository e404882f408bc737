"""``/metrics``: Prometheus series for requests (by route template), latency, the database
pool, ingestion, HL7 ACKs and audit appends, with no identifier anywhere in the output."""

from __future__ import annotations

import asyncio
import re
import uuid

import httpx
import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from app.core.config import Settings
from app.main import create_app
from app.ops.router import client_may_read
from tests.builders import make_patient, post_panel, result
from tests.interop.hl7.messages import magnesium_mmol, next_id, obx, oru

UUID_PATTERN = re.compile(r"[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}", re.I)
HL7 = {"content-type": "x-application/hl7-v2+er7"}

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(client: TestClient) -> tuple[str, Samples]:
    response = client.get("/metrics", auth=None)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    samples: Samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return response.text, samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_metrics_after_traffic_have_the_expected_series_and_no_identifiers(
    client: TestClient,
) -> None:
    _, before = scrape(client)
    mrn = f"MRN-METRICS-{uuid.uuid4().hex[:8]}"
    patient = make_patient(client, mrn=mrn)
    panel = post_panel(
        client,
        patient,
        [result("magnesium", "0.62", "mmol/L"), result("zinc", "85", "ug/dL")],
    )
    assert client.get(f"/api/v1/patients/{patient['id']}").status_code == 200
    assert client.get(f"/api/v1/panels/{panel['id']}").status_code == 200
    assert client.get(f"/api/v1/patients?identifier=urn:test:mrn|{mrn}").status_code == 200
    assert client.get(f"/api/v1/no-such-thing/{uuid.uuid4()}/{mrn}").status_code == 404
    hl7_mrn = next_id("MRN-HL7-METRICS")
    accepted = oru([magnesium_mmol()], mrn=hl7_mrn)
    refused = oru([obx("NOPE", "1", "mg/dL", system="L")], mrn=next_id("MRN"))
    assert client.post("/api/v1/hl7/oru", content=accepted, headers=HL7).status_code == 200
    assert client.post("/api/v1/hl7/oru", content=refused, headers=HL7).status_code == 200

    text, after = scrape(client)

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    requests = "mineral_http_requests_total"
    assert delta(requests, method="POST", route="/api/v1/patients", status="201") == 1
    assert delta(requests, method="GET", route="/api/v1/patients/{patient_id}", status="200") == 1
    assert delta(requests, method="GET", route="/api/v1/patients", status="200") == 1
    assert delta(requests, method="GET", route="unmatched", status="404") == 1
    assert delta(requests, method="POST", route="/api/v1/hl7/oru", status="200") == 2
    latency = "mineral_http_request_duration_seconds_count"
    assert delta(latency, method="POST", route="/api/v1/panels") == 1
    assert any(
        name == "mineral_http_request_duration_seconds_bucket"
        and dict(labels).get("route") == "/api/v1/panels"
        for name, labels in after
    )
    # Two JSON results, one HL7 panel; the refused HL7 message stored nothing and counts nothing.
    assert delta("mineral_panels_ingested_total", source_format="json") == 1
    assert delta("mineral_results_ingested_total", source_format="json") == 2
    assert delta("mineral_panels_ingested_total", source_format="hl7v2") == 1
    assert delta("mineral_hl7_acks_total", transport="http", code="AA") == 1
    assert delta("mineral_hl7_acks_total", transport="http", code="AE") == 1
    assert delta("mineral_audit_append_duration_seconds_count") >= 5
    assert ("mineral_db_pool_connections_in_use", ()) in after
    assert value(after, "mineral_db_pool_capacity") >= 1

    # Nothing that identifies a patient, a record or a caller.
    assert not UUID_PATTERN.search(text), UUID_PATTERN.search(text)
    for identifier in (mrn, hl7_mrn, patient["id"], panel["id"], "MRN-"):
        assert identifier not in text
    for (_, labels), _ in after.items():
        for _, label_value in labels:
            assert not UUID_PATTERN.search(label_value)


def test_a_re_posted_identical_panel_is_not_counted_again(client: TestClient) -> None:
    patient = make_patient(client)
    results = [result("magnesium", "0.62", "mmol/L")]
    first = post_panel(client, patient, results, accession="ACC-METRICS-DUP")
    _, before = scrape(client)
    post_panel(client, patient, results, accession="ACC-METRICS-DUP", expect=200)
    _, after = scrape(client)
    name = "mineral_panels_ingested_total"
    assert value(after, name, source_format="json") == value(before, name, source_format="json")
    assert first["id"]


def test_the_pool_gauge_returns_to_its_level_after_requests(client: TestClient) -> None:
    _, before = scrape(client)
    make_patient(client)
    _, after = scrape(client)
    # The scrape itself holds no connection: the level is the same once requests are done.
    assert value(after, "mineral_db_pool_connections_in_use") == value(
        before, "mineral_db_pool_connections_in_use"
    )


def test_metrics_can_be_restricted_to_networks_or_turned_off(settings: Settings) -> None:
    restricted = create_app(
        settings.model_copy(update={"metrics_allowed_networks": ["10.0.0.0/8"]})
    )
    with TestClient(restricted) as outside:  # the test client's address is not in 10/8
        response = outside.get("/metrics")
        assert response.status_code == 403
        assert response.headers["content-type"] == "application/problem+json"
    disabled = create_app(settings.model_copy(update={"metrics_enabled": False}))
    with TestClient(disabled) as anyone:
        assert anyone.get("/metrics").status_code == 404


@pytest.mark.parametrize(
    ("networks", "host", "allowed"),
    [
        ([], "203.0.113.9", True),
        (["10.0.0.0/8"], "10.1.2.3", True),
        (["10.0.0.0/8"], "192.168.1.1", False),
        (["10.0.0.0/8", "::1/128"], "::1", True),
        (["10.0.0.0/8"], None, False),
        (["10.0.0.0/8"], "not-an-address", False),
    ],
)
def test_metrics_network_allow_list(
    settings: Settings, networks: list[str], host: str | None, allowed: bool
) -> None:
    configured = settings.model_copy(update={"metrics_allowed_networks": networks})
    assert client_may_read(configured, host) is allowed


def test_an_allowed_network_reads_the_metrics(settings: Settings) -> None:
    app = create_app(settings.model_copy(update={"metrics_allowed_networks": ["10.0.0.0/8"]}))
    transport = httpx.ASGITransport(app=app, client=("10.9.8.7", 4000))

    async def get() -> httpx.Response:
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as scraper:
            return await scraper.get("/metrics")

    response = asyncio.run(get())
    assert response.status_code == 200
    assert "mineral_http_requests_total" in response.text

"""Every HTML page carries a strict Content-Security-Policy naming exactly its own inline
scripts and styles; the docs still work offline under it (checked in headless Chromium)."""

from __future__ import annotations

import base64
import hashlib
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from tests.browser import Browser, browser_fixture  # noqa: F401  (provides `browser`)
from tests.builders import make_patient
from tests.conftest import ROOT
from tests.outage.conftest import free_port
from tests.plans.builders import (
    LOW_MAGNESIUM,
    MODERATE_ISI,
    draft_plan,
    post_recent_panel,
    record_isi,
)

INLINE = re.compile(r"<(script|style)(?![^>]*\bsrc=)[^>]*>(.*?)</\1\s*>", re.DOTALL)


def _directives(policy: str) -> dict[str, list[str]]:
    parsed: dict[str, list[str]] = {}
    for directive in policy.split(";"):
        name, *values = directive.split()
        parsed[name] = values
    return parsed


def _sha256(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


def _assert_strict(response: httpx.Response) -> dict[str, list[str]]:
    assert response.headers["content-type"].startswith("text/html")
    policy = _directives(response.headers["content-security-policy"])
    assert policy["default-src"] == ["'none'"]
    assert policy["frame-ancestors"] == ["'none'"]
    assert policy["base-uri"] == ["'none'"]
    assert policy["form-action"] == ["'none'"]
    assert "'unsafe-inline'" not in policy["script-src"]
    assert "'unsafe-eval'" not in policy["script-src"]
    assert not any(
        source.startswith(("http:", "https:", "*")) for v in policy.values() for source in v
    )
    assert response.headers["x-frame-options"] == "DENY"
    assert response.headers["x-content-type-options"] == "nosniff"
    # Every inline script (and, outside the docs, style) is named by its hash.
    for kind, content in INLINE.findall(response.text):
        if kind == "script" or "'unsafe-inline'" not in policy["style-src"]:
            assert _sha256(content) in policy[f"{kind}-src"], kind
    return policy


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_documentation_pages_send_a_strict_policy(client: TestClient, page: str) -> None:
    policy = _assert_strict(client.get(page))
    assert policy["script-src"][0] == "'self'"


def test_the_printable_plan_page_allows_no_script_and_only_its_own_style(
    client: TestClient,
) -> None:
    patient = make_patient(client, sex="female", birth_date="1981-04-12")
    post_recent_panel(client, patient, LOW_MAGNESIUM)
    record_isi(client, patient, MODERATE_ISI)
    plan = draft_plan(client, patient)

    response = client.get(f"/api/v1/plans/{plan['id']}", headers={"Accept": "text/html"})

    assert response.status_code == 200, response.text
    policy = _assert_strict(response)
    assert policy["script-src"] == ["'none'"]
    assert "'unsafe-inline'" not in policy["style-src"]
    assert len(policy["style-src"]) == 2  # 'self' and the page's one <style> block


def test_json_responses_forbid_everything(client: TestClient) -> None:
    response = client.get("/health/live")
    assert (
        response.headers["content-security-policy"] == "default-src 'none'; frame-ancestors 'none'"
    )


@pytest.fixture(scope="module")
def docs_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The app over real HTTP (the browser must see the headers), on a throw-away SQLite."""
    folder = tmp_path_factory.mktemp("docs-server")
    port = free_port()
    env = {
        **os.environ,
        "DATABASE_URL": f"sqlite:///{folder / 'docs.db'}",
        "MINERAL_ENVIRONMENT": "test",
        "MINERAL_LOG_LEVEL": "WARNING",
    }
    env.pop("MINERAL_DATABASE_URL", None)
    log = Path(folder / "server.log")
    with log.open("w") as handle:
        process = subprocess.Popen(
            [sys.executable, "-m", "app", "serve", "--port", str(port)],
            cwd=ROOT,
            env=env,
            stdout=handle,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            try:
                if httpx.get(f"{url}/health/live", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=20)


@pytest.mark.parametrize(
    ("page", "rendered"),
    [("/docs", ".swagger-ui .info .title"), ("/redoc", "h1")],
)
def test_documentation_pages_still_render_under_the_policy(
    browser: Browser, docs_server: str, page: str, rendered: str
) -> None:
    driver = browser.driver
    driver.get(docs_server + page)

    title = WebDriverWait(driver, 30).until(
        lambda d: next(
            (e for e in d.find_elements(By.CSS_SELECTOR, rendered) if "Mineral Labs" in e.text),
            None,
        )
    )

    assert title is not None
    assert "Mineral Labs API" in title.text
    # The operations were drawn from /openapi.json, fetched under connect-src 'self'.
    assert "Post HL7 v2 ORU^R01 results" in driver.find_element(By.TAG_NAME, "body").text

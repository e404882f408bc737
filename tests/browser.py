"""Headless Chromium for tests that must see a page the way a patient's browser shows it.

Uses Debian's ``chromium`` and ``chromium-driver`` (``scripts/test.sh`` installs them); the
driver path is given explicitly, so Selenium Manager never tries to download anything. When
Chromium is missing the ``browser`` fixture FAILS rather than skips: a skipped browser test
proves nothing about the page.

Use it from a test module (or list ``tests.browser`` in the root conftest's ``pytest_plugins``
to share one Chromium across modules and drop the import)::

    from tests.browser import Browser, browser_fixture  # noqa: F401  (provides `browser`)

    def test_page(browser: Browser) -> None:
        assert "Hello" in browser.rendered_text("<p>Hello</p>")
"""

from __future__ import annotations

import itertools
import shutil
import tempfile
from base64 import b64decode
from collections.abc import Iterator
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.common.exceptions import WebDriverException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.print_page_options import PrintOptions

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
INSTALL_HINT = (
    "run scripts/test.sh (it installs them) or: "
    "apt-get install --no-install-recommends chromium chromium-driver"
)
CHROMIUM_ARGUMENTS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)
PAGE_LOAD_TIMEOUT_SECONDS = 30


class Browser:
    """One headless Chromium session; each call loads the HTML from a fresh local file."""

    def __init__(self, driver: webdriver.Chrome, pages: Path) -> None:
        self.driver = driver
        self.pages = pages
        self._numbers = itertools.count(1)

    def load(self, html: str) -> None:
        page = self.pages / f"page-{next(self._numbers)}.html"
        page.write_text(html, encoding="utf-8")
        self.driver.get(page.as_uri())

    def rendered_text(self, html: str) -> str:
        """The page's visible text as Chromium lays it out (``innerText`` of ``<body>``)."""
        self.load(html)
        return self.driver.find_element(By.TAG_NAME, "body").text

    def printed_pdf(self, html: str, *, page_width_cm: float = 21.0) -> bytes:
        """The page printed to PDF by Chromium (A4 by default)."""
        self.load(html)
        options = PrintOptions()
        options.page_width = page_width_cm
        options.page_height = 29.7
        return b64decode(self.driver.print_page(options))


def start_chromium(user_data_dir: Path) -> webdriver.Chrome:
    missing = [str(path) for path in (CHROMIUM, CHROMEDRIVER) if not path.exists()]
    if missing:
        pytest.fail(
            f"headless Chromium is required but {', '.join(missing)} is missing: " + INSTALL_HINT,
            pytrace=False,
        )
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for argument in (*CHROMIUM_ARGUMENTS, f"--user-data-dir={user_data_dir}"):
        options.add_argument(argument)
    try:
        driver = webdriver.Chrome(options=options, service=Service(str(CHROMEDRIVER)))
    except WebDriverException as error:
        pytest.fail(f"headless Chromium did not start: {error.msg}", pytrace=False)
    driver.set_page_load_timeout(PAGE_LOAD_TIMEOUT_SECONDS)
    return driver


@pytest.fixture(scope="session", name="browser")
def browser_fixture() -> Iterator[Browser]:
    """A headless Chromium shared by the whole test session, with a fresh profile."""
    workdir = Path(tempfile.mkdtemp(prefix="browser-test-"))
    profile = workdir / "profile"
    pages = workdir / "pages"
    profile.mkdir()
    pages.mkdir()
    try:
        driver = start_chromium(profile)
        try:
            yield Browser(driver, pages)
        finally:
            driver.quit()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

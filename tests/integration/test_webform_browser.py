"""The complaint form in a real browser: Debian's Chromium, headless, driven by Selenium through Debian's
chromedriver. A customer fills the Turkish page in, attaches a PDF and sends it; a second browser session meets
the rate limit; an oversized file is refused next to its field. With ``TICKETD_SCREENSHOTS=<folder>`` the pages
are saved there as PNG files."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from test_webform import CUSTOMER, PDF, acks, inbound_rows, serving, show, url, web_site

from conftest import Site, start_daemon, stop_daemon, wait_for
from ticketd.daemon.outgoing.smtp_sink import SmtpSink

pytestmark = pytest.mark.integration

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"


def browser(language: str = "tr-TR") -> Any:
    """A fresh headless Chromium: its own profile, cookies and cache (a second visitor, as far as the site can
    tell), asking for pages in ``language``."""
    if not (shutil.which(CHROMIUM) and shutil.which(CHROMEDRIVER)):
        pytest.fail("Chromium and its driver are not installed; `make test` installs them "
                    "(apt-get install chromium chromium-driver)")
    from selenium import webdriver

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                 "--window-size=900,1400", f"--lang={language}"):
        options.add_argument(flag)
    options.add_experimental_option("prefs", {"intl.accept_languages": language})
    return webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=CHROMEDRIVER))


def screenshot(driver: Any, name: str) -> None:
    folder = os.environ.get("TICKETD_SCREENSHOTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        driver.get_screenshot_as_file(str(Path(folder) / f"{name}.png"))


def fill(driver: Any, site: Site, files: list[Path], email: str = CUSTOMER) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    driver.get(url(site))
    driver.find_element(By.ID, "name").send_keys("Ayşe Demir")
    driver.find_element(By.ID, "email").send_keys(email)
    driver.find_element(By.ID, "company").send_keys("Demir Tekstil")
    driver.find_element(By.ID, "type-complaint").click()
    Select(driver.find_element(By.ID, "category")).select_by_value("fatura/iade")
    driver.find_element(By.ID, "subject").send_keys("Faturam iki kez kesildi")
    driver.find_element(By.ID, "description").send_keys("Kasım faturası iki kez geldi.\nLütfen birini iptal edin.")
    if files:
        driver.find_element(By.ID, "attachments").send_keys("\n".join(str(f) for f in files))


def send(driver: Any) -> None:
    from selenium.webdriver.common.by import By

    driver.find_element(By.CSS_SELECTOR, "button[type=submit]").click()


@pytest.fixture
def form_site(site: Site, smtp_sink: SmtpSink, request: pytest.FixtureRequest,
              backend: str) -> Iterator[tuple[Site, Any]]:
    if backend != "sqlite":
        pytest.skip("what the browser shows is the same on both databases; test_webform.py runs on both")
    marker = request.node.get_closest_marker("webform")
    web_site(site, smtp_sink, **(marker.kwargs if marker else {}))
    proc = start_daemon(site)
    wait_for("the web form", lambda: serving(site), proc)
    yield site, proc
    stop_daemon(proc)


@pytest.mark.webform(rate_per_hour=1)
def test_a_customer_sends_the_turkish_form_with_a_pdf_and_a_second_session_is_rate_limited(
        form_site: tuple[Site, Any], smtp_sink: SmtpSink, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By

    site, daemon = form_site
    pdf = tmp_path / "fatura-kasım.pdf"
    pdf.write_bytes(PDF)
    first = browser()
    try:
        fill(first, site, [pdf])
        assert first.find_element(By.TAG_NAME, "html").get_attribute("lang") == "tr"
        assert first.find_element(By.TAG_NAME, "h1").text == "Bize ulaşın"
        screenshot(first, "form-tr")
        send(first)
        result = first.find_element(By.ID, "result")
        assert "Talebinizi aldık" in result.text and CUSTOMER in result.text
        screenshot(first, "confirmation-tr")
    finally:
        first.quit()
    wait_for("the received mail", lambda: acks(smtp_sink), daemon)
    ack = acks(smtp_sink)[0].message
    assert "[ACME #1]" in ack["Subject"] and "Talebiniz alındı" in ack["Subject"]
    ticket = show(site, 1)
    assert (ticket["source"], ticket["type"], ticket["category"]) == ("web", "complaint", "fatura/iade")
    assert [(a["filename"], a["size"]) for a in ticket["messages"][0]["attachments"]] == [("fatura-kasım.pdf",
                                                                                          len(PDF))]
    assert "Kasım faturası iki kez geldi." in ticket["messages"][0]["text"]

    second = browser()  # another visitor's session from the same address
    try:
        fill(second, site, [], email="baska.musteri@example.com")
        send(second)
        notice = second.find_element(By.ID, "notice")
        assert "Son bir saatte sizden birkaç talep aldık" in notice.text
        assert second.find_element(By.ID, "subject").get_attribute("value") == "Faturam iki kez kesildi"
        screenshot(second, "rate-limited-tr")
    finally:
        second.quit()
    assert len(inbound_rows(site)) == 1


@pytest.mark.webform(max_file_bytes=100_000)
def test_an_oversized_file_is_refused_next_to_its_field(form_site: tuple[Site, Any], tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By

    site, _ = form_site
    big = tmp_path / "tarama.pdf"
    big.write_bytes(PDF + b"0" * 150_000)
    driver = browser()
    try:
        fill(driver, site, [big])
        send(driver)
        error = driver.find_element(By.ID, "attachments-error")
        assert "tarama.pdf" in error.text and "en çok 98 KB" in error.text
        field = driver.find_element(By.ID, "attachments")
        assert field.get_attribute("aria-invalid") == "true"
        assert "attachments-error" in (field.get_attribute("aria-describedby") or "")
        # the error is the field's neighbour, and the rest of what was typed is still there
        assert error.find_element(By.XPATH, "..").find_element(By.ID, "attachments") is not None
        assert driver.find_element(By.ID, "name").get_attribute("value") == "Ayşe Demir"
        screenshot(driver, "file-too-big-tr")
    finally:
        driver.quit()
    assert inbound_rows(site) == []

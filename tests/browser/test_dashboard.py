"""The dashboard in a real Chromium against a real `vigil api`: sign in with TOTP, the panel, a
patient's chart drawn with its thresholds, the timer, the live alert queue (an acknowledged alert
leaves; another user's acknowledgement removes one without a reload), the billing CSV download.
Every page runs under the production CSP: a refused script or style fails the test."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlparse

import httpx
import pyotp
import pytest
from playwright.sync_api import Browser, Page, expect

from tests.browser.conftest import Site, keep
from tests.clinician_api.world import PASSWORD

pytestmark = pytest.mark.slow


@contextmanager
def signed_in(chromium: Browser, site: Site, name: str, *, width: int = 1280) -> Iterator[Page]:
    context = chromium.new_context(base_url=site.base, viewport={"width": width, "height": 900}, accept_downloads=True)
    page = context.new_page()
    problems: list[str] = []
    page.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
    page.on(
        "console",
        lambda msg: (
            problems.append(f"console: {msg.text[:80]} at {msg.location} on {page.url}")
            if msg.type == "error"
            else None
        ),
    )
    page.on("response", lambda r: problems.append(f"{r.status} {r.url}") if r.status >= 400 else None)
    acct = site.world[name]
    page.goto("/login?next=/panel")
    keep(site.shots, "login", page.screenshot()) if name == "c1" else None
    page.fill("#email", acct.email)
    page.fill("#password", PASSWORD)
    page.click("#password-form button[type=submit]")
    expect(page.locator("#code")).to_be_visible()
    assert acct.totp
    page.fill("#code", pyotp.TOTP(acct.totp).now())
    page.click("#totp-form button[type=submit]")
    page.wait_for_url(lambda url: urlparse(url).path == "/panel")
    expect(page.locator("table.panel")).to_be_visible()
    try:
        yield page
    finally:
        context.close()
    assert problems == [], problems


def test_panel_patient_chart_and_timer(chromium: Browser, site: Site) -> None:
    with signed_in(chromium, site, "c1") as page:
        rows = page.locator("table.panel tbody tr")
        expect(rows).to_have_count(2)
        expect(page.locator("tr[data-patient='p1'] polyline").first).to_be_attached()
        keep(site.shots, "panel", page.screenshot(full_page=True))
        page.click("text=Name p1")
        page.wait_for_url("**/patients/p1")
        spo2 = page.locator("figure.chart[data-metric='spo2']")
        expect(spo2).to_have_attribute("data-resolution", "hourly")
        assert int(spo2.get_attribute("data-points") or 0) > 50
        expect(spo2.locator("canvas")).to_be_attached()
        expect(page.locator("#settings details[data-metric='spo2'] summary")).to_contain_text("4 thresholds")
        # Zooming to a short range shows every reading.
        page.click("button[data-range='1']")
        expect(spo2).to_have_attribute("data-resolution", "raw")
        page.click("button[data-range='30']")
        expect(spo2).to_have_attribute("data-resolution", "hourly")
        page.select_option("#timer-kind", "interactive_communication")
        page.click("button[data-action='timer-start']")
        stop = page.locator("button[data-action='timer-stop']")
        expect(stop).to_be_visible()
        keep(site.shots, "patient", page.screenshot(full_page=True))
        stop.click()
        expect(page.locator("#status")).to_contain_text("Timer stopped")
        expect(page.locator("table.time-entries tbody tr")).to_have_count(1)
        expect(page.locator("table.time-entries tbody tr td").nth(1)).to_have_text("interactive communication")


def test_alert_queue_updates_live(chromium: Browser, site: Site) -> None:
    mine, theirs = site.world.alerts["spo2"], site.world.alerts["hr"]
    with signed_in(chromium, site, "c1") as page:
        page.goto("/alerts")
        expect(page.locator("#live")).to_have_attribute("data-state", "live")
        expect(page.locator("#queue-rows tr[data-alert]")).to_have_count(2)
        keep(site.shots, "alerts", page.screenshot(full_page=True))
        page.evaluate("window.__sameDocument = true")
        page.click(f"button[data-action='acknowledge'][data-alert='{mine}']")
        expect(page.locator(f"#queue-rows tr[data-alert='{mine}']")).to_have_count(0)
        # Another user acknowledges the other alert through the API: it leaves this page by itself.
        with httpx.Client(base_url=site.base, timeout=10.0) as other:
            acct = site.world["n1"]
            login = other.post("/api/v1/auth/login", json={"email": acct.email, "password": PASSWORD})
            other.headers["x-csrf-token"] = login.json()["csrf_token"]
            assert acct.totp
            other.post("/api/v1/auth/totp/verify", json={"code": pyotp.TOTP(acct.totp).now()}).raise_for_status()
            other.post(f"/api/v1/alerts/{theirs}/acknowledge", json={}).raise_for_status()
        expect(page.locator(f"#queue-rows tr[data-alert='{theirs}']")).to_have_count(0)
        expect(page.locator("#queue-rows tr.empty")).to_have_count(1)
        assert page.evaluate("window.__sameDocument") is True  # no reload happened


def test_billing_csv_download_and_admin_pages(chromium: Browser, site: Site) -> None:
    with signed_in(chromium, site, "a1") as page:
        page.goto("/billing")
        expect(page.locator("table.billing tbody tr").first).to_be_visible()
        keep(site.shots, "billing", page.screenshot(full_page=True))
        with page.expect_download() as info:
            page.click("#download-csv")
        download = info.value
        assert download.suggested_filename.startswith("vigil-billing-o1-")
        text = Path(download.path()).read_text(encoding="utf-8")
        table = list(csv.DictReader(io.StringIO(text)))
        assert table
        assert {row["patient_id"] for row in table} == {"p1"}
        assert "99454" in {row["code"] for row in table}
        page.goto("/admin/policy")
        expect(page.locator("#policy-json")).to_be_visible()
        keep(site.shots, "policy", page.screenshot(full_page=True))
        page.goto("/admin/fleet")
        expect(page.locator("table.fleet tr[data-agent='agent-1']")).to_be_visible()
        keep(site.shots, "fleet", page.screenshot(full_page=True))


def test_tablet_width_and_keyboard(chromium: Browser, site: Site) -> None:
    with signed_in(chromium, site, "n1", width=800) as page:
        overflow = page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")
        assert overflow <= 0  # nothing wider than a tablet; wide tables scroll inside their box
        page.keyboard.press("Tab")
        focused = page.evaluate("document.activeElement.textContent.trim()")
        assert focused == "Skip to content"
        page.keyboard.press("Enter")
        page.keyboard.press("Tab")
        assert page.evaluate("document.activeElement.closest('main') !== null")
        keep(site.shots, "panel-tablet", page.screenshot(full_page=True))


def test_first_sign_in_enrols_an_authenticator_from_the_qr_page(chromium: Browser, site: Site) -> None:
    acct = site.world["c3"]  # a clinician without an authenticator yet
    context = chromium.new_context(base_url=site.base)
    try:
        page = context.new_page()
        page.goto("/panel")
        page.wait_for_url(lambda url: urlparse(url).path == "/login")
        page.fill("#email", acct.email)
        page.fill("#password", PASSWORD)
        page.click("#password-form button[type=submit]")
        qr = page.locator("#qr")
        expect(qr).to_be_visible()
        # The SVG QR code loaded. Polled from here: wait_for_function's in-page polling compiles its
        # predicate with eval, which the page's CSP (no 'unsafe-eval') refuses once a poll is needed.
        for _ in range(200):
            if page.evaluate("document.getElementById('qr').naturalWidth > 0"):
                break
            page.wait_for_timeout(50)
        else:
            pytest.fail("the QR code image never loaded")
        secret = page.locator("#totp-secret").inner_text()
        page.fill("#code", pyotp.TOTP(secret).now())
        page.click("#totp-form button[type=submit]")
        page.wait_for_url(lambda url: urlparse(url).path == "/panel")
        expect(page.locator("h1")).to_have_text("My panel")
    finally:
        context.close()

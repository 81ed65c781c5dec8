"""A video consult in two real Chromium windows with fake camera and microphone, against a real
`vigil api` under the production CSP: the clinician starts the consult the escalation requested,
the patient opens their join link and waits, the clinician admits them, both see the other's video
(``getStats`` framesDecoded > 0 on the remote tile), chat arrives both ways, the patient's
signalling connection drops and resumes without a new admission, the clinician ends the call and
the patient reloads the page and is back in the call without a new admission, the clinician ends
the call and the consult page shows it completed with its events. A second test runs a call of
three: an interpreter invited from the consult page joins the mesh (one connection per pair).

The call set-up time (the clinician's Admit click until both pages decode remote video, as this test
observes it, stats polled every 250 ms) is printed; screenshots go to ``VIGIL_SCREENSHOTS``."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from urllib.parse import urlparse, urlsplit

import psycopg
import pyotp
import pytest
from playwright.sync_api import Browser, Page, expect

from consult.requests import request_video_consult
from tests.browser.conftest import CHROMIUM, Site, keep
from tests.clinician_api.world import PASSWORD

pytestmark = pytest.mark.slow

FRAMES = re.compile(r"^[1-9][0-9]*$")
MEDIA_FLAGS = [
    "--use-fake-device-for-media-stream",
    "--use-fake-ui-for-media-stream",
    "--autoplay-policy=no-user-gesture-required",
    "--disable-features=WebRtcHideLocalIpsWithMdns",
]


@pytest.fixture
def media_chromium() -> Iterator[Browser]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=str(CHROMIUM),
            headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", *MEDIA_FLAGS],
        )
        try:
            yield browser
        finally:
            browser.close()


@contextmanager
def window(browser: Browser, site: Site) -> Iterator[Page]:
    """A browser window whose page errors, console errors and HTTP errors fail the test."""
    context = browser.new_context(base_url=site.base, viewport={"width": 1100, "height": 850})
    page = context.new_page()
    problems: list[str] = []
    page.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
    page.on("console", lambda msg: problems.append(f"console: {msg.text[:120]}") if msg.type == "error" else None)
    page.on("response", lambda r: problems.append(f"{r.status} {r.url}") if r.status >= 400 else None)
    try:
        yield page
    finally:
        context.close()
    assert problems == [], problems


def sign_in(page: Page, site: Site, name: str) -> None:
    acct = site.world[name]
    page.goto("/login?next=/consults")
    page.fill("#email", acct.email)
    page.fill("#password", PASSWORD)
    page.click("#password-form button[type=submit]")
    expect(page.locator("#code")).to_be_visible()
    assert acct.totp
    page.fill("#code", pyotp.TOTP(acct.totp).now())
    page.click("#totp-form button[type=submit]")
    page.wait_for_url(lambda url: urlparse(url).path == "/consults")


def escalation_requests_a_consult(site: Site) -> int:
    """What the escalation walk's last step does: a consult request for the alert's patient."""
    with psycopg.connect(site.world.url, autocommit=True) as conn, conn.transaction():
        row = request_video_consult(
            conn,  # type: ignore[arg-type]
            org_id="o1",
            patient_id="p1",
            alert_id=site.world.alerts["spo2"],
            at=datetime.now(UTC),
            requested_by="escalation",
            reason="SpO2 low, not acknowledged",
        )
    return row.request_id


def test_patient_waits_clinician_admits_video_chat_reconnect_end(media_chromium: Browser, site: Site) -> None:
    request_id = escalation_requests_a_consult(site)
    with window(media_chromium, site) as clinician, window(media_chromium, site) as patient:
        sign_in(clinician, site, "c1")
        clinician.click(f"tr[data-consult='{request_id}'] a")
        clinician.wait_for_url(f"**/consults/{request_id}")
        clinician.click("button[data-action='consult-start']")
        link = clinician.locator("#patient-link")
        expect(link).to_have_value(re.compile(r"/consult/rooms/[A-Za-z0-9_-]{16,64}/join#t=v1\."))
        keep(site.shots, "consult-start", clinician.screenshot(full_page=True))

        # The patient opens their link (here: the same path and fragment on the test server).
        parts = urlsplit(link.input_value())
        patient.goto(f"{parts.path}#{parts.fragment}")
        expect(patient.locator("#call")).to_have_attribute("data-state", "waiting")
        assert "#t=" not in patient.url  # the token leaves the address bar
        keep(site.shots, "call-waiting-room", patient.screenshot(full_page=True))

        clinician.click("#my-join")
        expect(clinician.locator("#call")).to_have_attribute("data-state", "in-call")
        admit = clinician.locator("#waiting-list button[data-action='admit']")
        expect(admit).to_be_enabled()
        started = time.monotonic()
        admit.click()
        expect(patient.locator("#call")).to_have_attribute("data-state", "in-call")
        remote_at_patient = patient.locator("figure.tile.remote")
        remote_at_clinician = clinician.locator("figure.tile.remote")
        expect(remote_at_patient).to_have_attribute("data-frames-decoded", FRAMES, timeout=30_000)
        expect(remote_at_clinician).to_have_attribute("data-frames-decoded", FRAMES, timeout=30_000)
        setup_s = time.monotonic() - started
        print(f"call set-up time (admit click to remote video decoded on both pages): {setup_s:.2f} s")

        patient.fill("#chat-text", "My ankle is swollen again")
        patient.click("#chat-form button[type=submit]")
        expect(clinician.locator("#chat-log li")).to_contain_text("Patient: My ankle is swollen again")
        clinician.fill("#chat-text", "Please repeat your reading after the call")
        clinician.press("#chat-text", "Enter")
        expect(patient.locator("#chat-log li").nth(1)).to_contain_text("Clinician: Please repeat your reading")
        keep(site.shots, "call-clinician", clinician.screenshot(full_page=True))
        keep(site.shots, "call-patient", patient.screenshot(full_page=True))

        # A network blip on the patient's side: signalling reconnects, the call and its media carry on.
        before = int(remote_at_clinician.get_attribute("data-frames-decoded") or 0)
        patient.evaluate("window.vigilCall.blip()")
        expect(patient.locator("#call")).to_have_attribute("data-state", "in-call")
        expect(clinician.locator("#admit")).to_be_hidden()  # no second admission was needed
        deadline = time.monotonic() + 15
        while int(remote_at_clinician.get_attribute("data-frames-decoded") or 0) <= before + 10:
            assert time.monotonic() < deadline, "video stopped after the reconnect"
            clinician.wait_for_timeout(100)
        expect(patient.locator("#chat-log li")).to_have_count(2)

        # The patient reloads the page: the link is kept in the tab, the seat within the grace, so the
        # page rejoins the call without a new admission and the clinician offers a fresh connection.
        patient.reload()
        expect(patient.locator("#call")).to_have_attribute("data-state", "in-call")
        expect(patient.locator("figure.tile.remote")).to_have_count(1)
        expect(patient.locator("figure.tile.remote")).to_have_attribute("data-frames-decoded", FRAMES, timeout=30_000)
        expect(clinician.locator("figure.tile.remote")).to_have_count(1)
        expect(clinician.locator("#admit")).to_be_hidden()

        clinician.click("#end-call")
        expect(patient.locator("#call")).to_have_attribute("data-state", "ended")
        expect(clinician.locator("#call")).to_have_attribute("data-state", "ended")
        keep(site.shots, "call-ended", patient.screenshot(full_page=True))

        clinician.goto(f"/consults/{request_id}")
        expect(clinician.locator("#consult-status")).to_have_text("completed")
        expect(clinician.locator("ol.call-events li[data-kind='ended']")).to_have_count(1)
        expect(clinician.locator("#call-duration")).to_be_visible()
        keep(site.shots, "consult-completed", clinician.screenshot(full_page=True))
    with psycopg.connect(site.world.url) as conn:
        billed = conn.execute(
            "SELECT kind FROM time_entries WHERE call_event_id IS NOT NULL AND patient_id = 'p1'"
        ).fetchall()
    assert billed == [("interactive_communication",)]


def test_three_in_a_call_interpreter_invited_from_the_consult_page(media_chromium: Browser, site: Site) -> None:
    request_id = escalation_requests_a_consult(site)
    with (
        window(media_chromium, site) as clinician,
        window(media_chromium, site) as patient,
        window(media_chromium, site) as interpreter,
    ):
        sign_in(clinician, site, "c1")
        clinician.goto(f"/consults/{request_id}")
        clinician.click("button[data-action='consult-start']")
        expect(clinician.locator("#patient-link")).to_have_value(re.compile(r"#t=v1\."))
        patient_link = urlsplit(clinician.locator("#patient-link").input_value())
        clinician.reload()
        clinician.fill("#guest-label", "Spanish")
        clinician.click("#guest-form button[type=submit]")
        expect(clinician.locator("#reissued-link")).to_have_value(re.compile(r"#t=v1\."))
        guest_link = urlsplit(clinician.locator("#reissued-link").input_value())
        assert guest_link.fragment.startswith("t=v1.")
        clinician.click("button[data-action='my-link']")
        expect(clinician.locator("#call")).to_have_attribute("data-state", "in-call")
        for page, link in ((patient, patient_link), (interpreter, guest_link)):
            page.goto(f"{link.path}#{link.fragment}")
            expect(page.locator("#call")).to_have_attribute("data-state", "waiting")
        admit = clinician.locator("#waiting-list button[data-action='admit']")
        expect(admit).to_have_count(2)
        expect(clinician.locator("#waiting-list")).to_contain_text("Interpreter (Spanish) is waiting")
        for _ in range(2):
            admit.first.click()
            expect(admit).to_have_count(0 if _ else 1)
        for page in (clinician, patient, interpreter):
            tiles = page.locator("figure.tile.remote")
            expect(tiles).to_have_count(2)
            for n in range(2):
                expect(tiles.nth(n)).to_have_attribute("data-frames-decoded", FRAMES, timeout=30_000)
        names = sorted(t.strip() for t in interpreter.locator("figure.tile.remote figcaption").all_inner_texts())
        assert names == ["Clinician", "Patient"]
        keep(site.shots, "call-three", clinician.screenshot(full_page=True))
        clinician.click("#end-call")
        for page in (patient, interpreter):
            expect(page.locator("#call")).to_have_attribute("data-state", "ended")

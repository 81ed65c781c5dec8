"""Secure messaging in a real Chromium against a real `vigil api`: a clinician starts a thread and the
patient's open page shows it (unread) without a reload; the patient reads it and answers with a
photo, which appears on the clinician's open page, decrypted and drawn; the clinician's edit and
deletion reach the patient's page live; everything under the production CSP (a refused script or
style, or any failed request, fails the test)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import urlparse

import pyotp
import pytest
from playwright.sync_api import Browser, Page, expect

from tests.browser.conftest import Site, keep
from tests.clinician_api.messaging import png_bytes
from tests.clinician_api.world import PASSWORD

pytestmark = pytest.mark.slow


@contextmanager
def signed_in(chromium: Browser, site: Site, name: str) -> Iterator[Page]:
    context = chromium.new_context(base_url=site.base, viewport={"width": 1100, "height": 900})
    page = context.new_page()
    problems: list[str] = []
    page.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
    page.on("console", lambda msg: problems.append(f"console: {msg.text[:80]}") if msg.type == "error" else None)
    page.on("response", lambda r: problems.append(f"{r.status} {r.url}") if r.status >= 400 else None)
    acct = site.world[name]
    page.goto("/login?next=/messages")
    page.fill("#email", acct.email)
    page.fill("#password", PASSWORD)
    page.click("#password-form button[type=submit]")
    if acct.totp:
        expect(page.locator("#code")).to_be_visible()
        page.fill("#code", pyotp.TOTP(acct.totp).now())
        page.click("#totp-form button[type=submit]")
    page.wait_for_url(lambda url: urlparse(url).path == "/messages")
    expect(page.locator("#live")).to_have_attribute("data-state", "live")
    try:
        yield page
    finally:
        context.close()
    assert problems == [], problems


def test_a_conversation_with_a_photo_live_on_both_pages(chromium: Browser, site: Site) -> None:
    with signed_in(chromium, site, "pu1") as patient, signed_in(chromium, site, "c1") as clinician:
        expect(patient.locator("#thread-rows tr.empty")).to_have_count(1)
        patient.evaluate("window.__sameDocument = true")

        clinician.select_option("#new-patient", "p1")
        clinician.fill("#new-subject", "Your ankle")
        clinician.fill("#new-body", "How is the swelling today?")
        clinician.click("#new-thread button[type=submit]")
        clinician.wait_for_url("**/messages/*")
        thread_id = urlparse(clinician.url).path.rsplit("/", 1)[1]
        expect(clinician.locator("#live")).to_have_attribute("data-state", "live")

        # The patient's list shows the new thread, unread, without a reload.
        row = patient.locator(f"#thread-rows tr[data-thread='{thread_id}']")
        expect(row).to_have_attribute("data-unread", "1")
        assert patient.evaluate("window.__sameDocument") is True
        keep(site.shots, "messages", patient.screenshot(full_page=True))
        row.locator("a").click()
        patient.wait_for_url(f"**/messages/{thread_id}")
        expect(patient.locator("#live")).to_have_attribute("data-state", "live")
        expect(patient.locator("#thread-messages li.message .body")).to_have_text(["How is the swelling today?"])

        # The patient answers with a photo; the clinician's open page shows it, decrypted and drawn.
        patient.fill("#compose-body", "A bit worse, here is a photo.")
        patient.set_input_files(
            "#compose-file", files=[{"name": "ankle.png", "mimeType": "image/png", "buffer": png_bytes(64, 48)}]
        )
        patient.click("#compose button[type=submit]")
        expect(patient.locator("#status")).to_have_text("Message sent.")
        photo = clinician.locator("#thread-messages li.message img.thumb")
        expect(photo).to_have_count(1)
        expect(clinician.locator("#thread-messages li.message .body")).to_have_text(
            ["How is the swelling today?", "A bit worse, here is a photo."]
        )
        expect(photo).to_have_js_property("naturalWidth", 64)  # decoded: the decrypted bytes are a real PNG
        # The patient read the first message before answering; the clinician's page says so.
        expect(clinician.locator("#thread-messages li.message.mine .read")).to_have_text("Read by 1")
        keep(site.shots, "thread", clinician.screenshot(full_page=True))

        # The clinician edits, then deletes, the first message: the patient's page follows both.
        first = clinician.locator("#thread-messages li.message.mine")
        first.locator("[data-action='edit-message']").click()
        first.locator("form.edit textarea").fill("How is the swelling this morning?")
        first.locator("form.edit button[type=submit]").click()
        expect(patient.locator("#thread-messages li.message .body").first).to_have_text(
            "How is the swelling this morning?"
        )
        expect(patient.locator("#thread-messages li.message").first.locator(".meta")).to_contain_text("edited")
        clinician.locator("#thread-messages li.message.mine [data-action='delete-message']").click()
        expect(patient.locator("#thread-messages li.message.deleted .body")).to_have_text("This message was deleted.")
        expect(patient.locator("#thread-messages li.message")).to_have_count(2)

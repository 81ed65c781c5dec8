"""A consult note in a real Chromium against a real `vigil api`, under the production CSP: the
clinician starts a note from the patient's page (the objective section holds the recent readings),
writes it, signs it (then it is read-only) and drafts an amendment."""

from __future__ import annotations

from urllib.parse import urlparse

import pytest
from playwright.sync_api import Browser, expect

from tests.browser.conftest import Site, keep
from tests.browser.test_messages import signed_in

pytestmark = pytest.mark.slow


def test_write_sign_and_amend_a_consult_note(chromium: Browser, site: Site) -> None:
    with signed_in(chromium, site, "c1") as page:
        page.goto("/patients/p1")
        page.click("text=Consult notes")
        page.wait_for_url("**/patients/p1/notes")
        page.click("[data-action='note-start']")
        page.wait_for_url("**/notes/*")
        note_id = urlparse(page.url).path.rsplit("/", 1)[1]
        expect(page.locator("#note-objective")).to_contain_text("Recent readings")
        page.fill("#note-subjective", "Breathless on the stairs since Tuesday.")
        with page.expect_navigation():  # the page reloads to show the saved draft
            page.click("[data-action='note-save']")
        expect(page.locator("#note-subjective")).to_have_value("Breathless on the stairs since Tuesday.")
        page.fill("#note-assessment", "Mild hypoxaemia, stable.")
        page.fill("#note-plan", "Re-measure SpO2 in 4 hours.")
        page.click("[data-action='note-sign']")
        expect(page.locator(".badge-state")).to_have_text("signed")
        expect(page.locator("#note-plan")).to_have_attribute("readonly", "")
        expect(page.locator("#note-subjective")).to_have_value("Breathless on the stairs since Tuesday.")
        keep(site.shots, "note", page.screenshot(full_page=True))
        page.fill("#amend-reason", "Onset was Monday")
        page.click("#amend-form button[type=submit]")
        expect(page.locator(".badge-state")).to_have_text("amending")
        expect(page.locator("#note-plan")).to_have_value("Re-measure SpO2 in 4 hours.")
        assert urlparse(page.url).path == f"/notes/{note_id}"

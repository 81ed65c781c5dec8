"""The patient portal in a real Chromium at a phone's size (390 x 844) against a real `vigil api`:
a patient signs in (no second factor for patients), lands on their own portal and sees their week
in words, a chart, their devices and their consent; every page passes axe-core's WCAG 2 A/AA rules
(axe-core comes from the npm registry into tests/browser/a11y by ./run.sh setup, never from a CDN)
and a focused DOM check of the basics (landmarks, one h1, labelled controls, images with a text
alternative, a skip link that moves focus); nothing is wider than the phone. Every page runs under
the production CSP: a refused script or style, or any console error, fails the test."""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest
from playwright.sync_api import Browser, Page, expect

from tests.browser.conftest import CHROMIUM, keep
from tests.clinician_api.portal.scene import furnish
from tests.clinician_api.world import PASSWORD, SECRET_KEY, World, build
from tests.support.api_process import ApiProcess, api_env, running_api

pytestmark = pytest.mark.slow

AXE = Path(__file__).resolve().parent / "a11y" / "node_modules" / "axe-core" / "axe.min.js"
PHONE = {"width": 390, "height": 844}

# The basics a screen reader needs, checked in the page itself (axe checks far more).
_BASICS = """() => {
  const out = [];
  const name = (el) => {
    if (el.getAttribute('aria-label')) return el.getAttribute('aria-label');
    const by = el.getAttribute('aria-labelledby');
    if (by) return by.split(/\\s+/).map((id) => (document.getElementById(id) || {}).textContent || '').join(' ');
    if (el.labels && el.labels.length) return el.labels[0].textContent;
    return el.textContent || el.getAttribute('title') || '';
  };
  for (const tag of ['header', 'nav', 'main', 'footer']) {
    if (!document.querySelector(tag)) out.push('no ' + tag + ' landmark');
  }
  if (document.querySelectorAll('h1').length !== 1) out.push('not exactly one h1');
  if (!document.documentElement.lang) out.push('no lang');
  for (const el of document.querySelectorAll('input, select, textarea, button, a[href]')) {
    if (el.type !== 'hidden' && !name(el).trim()) out.push('unnamed control: ' + el.outerHTML.slice(0, 80));
  }
  for (const img of document.querySelectorAll('img')) {
    if (!img.hasAttribute('alt')) out.push('image without alt: ' + img.outerHTML.slice(0, 80));
  }
  for (const svg of document.querySelectorAll('svg')) {
    if (svg.getAttribute('role') !== 'img' || !name(svg).trim()) out.push('svg without role=img and a name');
  }
  const size = parseFloat(getComputedStyle(document.body).fontSize);
  if (size < 20) out.push('body text smaller than 20px: ' + size);
  const wide = document.documentElement.scrollWidth - document.documentElement.clientWidth;
  if (wide > 0) out.push('wider than the screen by ' + wide + 'px');
  return out;
}"""


class PortalSite:
    def __init__(self, world: World, api: ApiProcess, shots: Path) -> None:
        self.world, self.api, self.shots = world, api, shots


@pytest.fixture
def portal_site(db: str, tmp_path: Path) -> Iterator[PortalSite]:
    if not CHROMIUM.exists():
        pytest.fail("chromium is not installed: run ./run.sh setup (apt-get install chromium)")
    if not AXE.exists():
        pytest.fail(f"{AXE} is missing: run ./run.sh setup (it fetches axe-core from the npm registry)")
    world = build(db)
    furnish(world, datetime.now(UTC))
    shots = Path(os.environ.get("VIGIL_SCREENSHOTS") or tmp_path / "screenshots")
    shots.mkdir(parents=True, exist_ok=True)
    with running_api(api_env(db, SECRET_KEY)) as api:
        yield PortalSite(world, api, shots)


def _axe(page: Page) -> list[dict[str, Any]]:
    """axe-core's WCAG 2.0/2.1 A and AA violations on the page as it is now."""
    if not page.evaluate("typeof window.axe !== 'undefined'"):
        page.evaluate(AXE.read_text(encoding="utf-8") + "\n;0")  # DevTools evaluation: not page script
    result: dict[str, Any] = page.evaluate(
        "() => axe.run(document, {runOnly: {type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa']}})"
    )
    return [
        {"id": v["id"], "nodes": [n["html"][:120] for n in v["nodes"]][:3], "help": v["help"]}
        for v in result["violations"]
    ]


def _check(page: Page) -> None:
    assert _axe(page) == []
    assert page.evaluate(_BASICS) == []


def test_a_patient_on_a_phone_sees_readings_devices_and_consent(chromium: Browser, portal_site: PortalSite) -> None:
    context = chromium.new_context(base_url=portal_site.api.base, viewport=PHONE, is_mobile=True, has_touch=True)
    page = context.new_page()
    problems: list[str] = []
    page.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
    page.on("console", lambda msg: problems.append(f"console: {msg.text[:120]}") if msg.type == "error" else None)
    page.on("response", lambda r: problems.append(f"{r.status} {r.url}") if r.status >= 400 else None)
    shots = portal_site.shots
    try:
        acct = portal_site.world["pu1"]
        page.goto("/portal")
        page.wait_for_url(lambda url: urlparse(url).path == "/login")
        page.fill("#email", acct.email)
        page.fill("#password", PASSWORD)
        page.click("#password-form button[type=submit]")
        page.wait_for_url(lambda url: urlparse(url).path == "/portal/p1")
        expect(page.locator("h1")).to_have_text("Hello, PU1")
        expect(page.locator("main")).to_contain_text("Your blood pressure this week: mostly in your target range.")
        expect(page.locator("main")).to_contain_text("1 of your devices needs attention.")
        expect(page.locator("main")).to_contain_text("No video appointment booked.")
        _check(page)
        keep(shots, "portal-home", page.screenshot(full_page=True))

        # Keyboard: the skip link comes first and moves focus into the main content.
        page.keyboard.press("Tab")
        assert page.evaluate("document.activeElement.textContent.trim()") == "Skip to content"
        page.keyboard.press("Enter")
        page.keyboard.press("Tab")
        assert page.evaluate("document.activeElement.closest('main') !== null")

        page.get_by_role("navigation", name="My pages").get_by_role("link", name="My readings").click()
        page.wait_for_url("**/portal/p1/readings")
        bp = page.locator("section[data-topic='blood_pressure']")
        expect(bp.locator(".verdict")).to_have_text("Your blood pressure this week: mostly in your target range.")
        expect(bp.locator("svg.week-chart circle")).to_have_count(28)  # 14 hours, two numbers each
        expect(
            page.get_by_role("img", name="Chart of your oxygen level over the last 7 days.", exact=False)
        ).to_be_visible()
        keep(shots, "portal-readings", page.screenshot(full_page=True))
        bp.locator("summary").click()
        expect(bp.locator("table tbody tr").first).to_be_visible()
        _check(page)

        page.get_by_role("link", name="My devices").click()
        page.wait_for_url("**/portal/p1/devices")
        oximeter = page.locator("li.device", has_text="Finger pulse oximeter")
        expect(oximeter).to_contain_text("Needs attention")
        expect(oximeter).to_contain_text("Battery low (12 %): please change or charge it.")
        expect(page.locator("li.device", has_text="Blood pressure monitor")).to_contain_text("Working")
        _check(page)
        keep(shots, "portal-devices", page.screenshot(full_page=True))

        page.get_by_role("link", name="My consent").click()
        page.wait_for_url("**/portal/p1/consent")
        expect(page.locator("main")).to_contain_text(
            "You agreed to remote monitoring on Tuesday 3 February 2026, online."
        )
        expect(page.locator("dl.facts")).to_contain_text("rpm-v3")
        _check(page)
        keep(shots, "portal-consent", page.screenshot(full_page=True))

        for link, path in (("Messages", "messages"), ("Video appointments", "consults")):
            page.get_by_role("link", name=link).click()
            page.wait_for_url(f"**/portal/p1/{path}")
            _check(page)
        expect(page.locator("main")).to_contain_text("No video appointment booked.")

        # Another patient's portal is the same "not found" as a missing one.
        seen = len(problems)
        r = page.goto("/portal/p2/readings")
        assert r is not None
        assert r.status == 404
        expect(page.locator("h1")).to_have_text("Not Found")
        assert all("404" in p for p in problems[seen:])  # the refused page itself, and only it
        del problems[seen:]

        page.goto("/portal/p1")
        page.get_by_role("button", name="Sign out").click()
        page.wait_for_url(lambda url: urlparse(url).path == "/login")
    finally:
        context.close()
    assert problems == [], problems

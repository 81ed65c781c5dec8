"""Browser tests: Debian's chromium (/usr/bin/chromium) driven by Playwright against a real
``vigil api`` process on a real database. Nothing downloads a browser: Playwright is told the
executable's path (``playwright install`` is never run).

``VIGIL_SCREENSHOTS`` names a folder to keep screenshots of the main pages in (the docs' are made
with ``python -m scripts.screenshots``); by default they go to the test's temporary folder.
"""

from __future__ import annotations

import math
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest

from tests.clinician_api.world import SECRET_KEY, World, add_alert, add_readings, build
from tests.support.api_process import ApiProcess, api_env, running_api

CHROMIUM = Path("/usr/bin/chromium")


@dataclass
class Site:
    world: World
    api: ApiProcess
    shots: Path

    @property
    def base(self) -> str:
        return self.api.base


def _history(url: str, now: datetime) -> None:
    """30 days of vitals for p1 and p2 (every 2 hours), devices, and an episode for billing."""
    start = now - timedelta(days=30)
    points = [start + timedelta(hours=2 * i) for i in range(30 * 12)]
    for pid, shift in (("p1", 0.0), ("p2", 3.0)):
        add_readings(
            url, "o1", pid, "spo2", [(t, 95.5 - shift / 2 + math.sin(i / 9) * 1.5) for i, t in enumerate(points)]
        )
        add_readings(
            url, "o1", pid, "heart_rate", [(t, 72 + shift + math.cos(i / 7) * 8) for i, t in enumerate(points)]
        )
        add_readings(
            url, "o1", pid, "bp_systolic", [(t, 132 + shift + math.sin(i / 5) * 9) for i, t in enumerate(points[::6])]
        )
    with psycopg.connect(url, autocommit=True) as conn, conn.transaction():
        conn.execute(
            "INSERT INTO agents (agent_id, org_id, agent_version, last_seen_at) VALUES ('agent-1', 'o1', '0.1.0', %s)",
            (now,),
        )
        conn.execute(
            "INSERT INTO agent_assignments (agent_id, org_id, patient_id, valid_from) "
            "VALUES ('agent-1', 'o1', 'p1', %s)",
            (start,),
        )
        conn.execute(
            "INSERT INTO devices (device_id, org_id, agent_id, profile, manufacturer, model, battery_pct, "
            "last_seen_at) VALUES ('00:1C:05:FF:E8:74', 'o1', 'agent-1', 'pulse_oximeter', 'Nonin', '3230', 64, %s)",
            (now,),
        )
        conn.execute(
            "INSERT INTO monitoring_episodes (org_id, patient_id, start_date, setup_at, setup_by, created_at) "
            "SELECT 'o1', 'p1', %s, %s, user_id, %s FROM users WHERE email = 'c1@o1.test'",
            (start.date(), start, now),
        )


@pytest.fixture
def site(db: str, tmp_path: Path) -> Iterator[Site]:
    if not CHROMIUM.exists():
        pytest.fail("chromium is not installed: run ./run.sh setup (apt-get install chromium)")
    world = build(db)
    now = datetime.now(UTC)
    _history(db, now)
    add_alert(world, "spo2", "o1", "p1", "high", opened=now - timedelta(hours=3))
    add_alert(world, "hr", "o1", "p2", "medium", opened=now - timedelta(hours=1), rule="threshold:heart_rate:high")
    shots = Path(os.environ.get("VIGIL_SCREENSHOTS") or tmp_path / "screenshots")
    shots.mkdir(parents=True, exist_ok=True)
    with running_api(api_env(db, SECRET_KEY)) as api:
        yield Site(world, api, shots)


@pytest.fixture
def chromium() -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=str(CHROMIUM),
            headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
        )
        try:
            yield browser
        finally:
            browser.close()


def keep(shots: Path, name: str, data: bytes) -> None:
    (shots / f"{name}.png").write_bytes(data)


__all__ = ["Site", "keep", "shutil"]

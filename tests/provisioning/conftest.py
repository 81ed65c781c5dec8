"""Provisioning called as the clinician API calls it: settings built once, functions of the package.

``settings`` points at the test database and a fresh key and broker directory (no broker rendered:
changes commit with a note); ``tenant`` adds server keys, organisation ``clinic-1`` with patients
``p1`` and ``p2``, and organisation ``clinic-2`` with ``q1``. ``platform`` is the production set-up
of tests/support/platform.py (rendered broker, running Mosquitto) with its settings.
"""

from __future__ import annotations

import getpass
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from provisioning import keys, tenants
from provisioning.settings import ProvisioningSettings
from rpm_core.clock import ManualClock
from tests.support.platform import RenderedPlatform, start_platform

T0 = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)


def settings_of(platform: RenderedPlatform) -> ProvisioningSettings:
    """The settings the platform's CLI runs read from its environment, built directly."""
    values = {k.removeprefix("VIGIL_").lower(): v for k, v in platform.env.items()}
    return ProvisioningSettings.model_validate(values)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(T0)


@pytest.fixture
def settings(db: str, tmp_path: Path) -> ProvisioningSettings:
    return ProvisioningSettings(
        database_url=db,
        key_dir=tmp_path / "keys",
        broker_dir=tmp_path / "broker",
        broker_user=getpass.getuser(),
    )


@pytest.fixture
def tenant(settings: ProvisioningSettings, clock: ManualClock) -> ProvisioningSettings:
    keys.init_keys(settings, now=clock.now())
    tenants.create_org(settings, "clinic-1", name="Clinic")
    tenants.create_patient(settings, "p1", org_id="clinic-1", name="Ann")
    tenants.create_patient(settings, "p2", org_id="clinic-1", name="Bob")
    tenants.create_org(settings, "clinic-2", name="Other clinic")
    tenants.create_patient(settings, "q1", org_id="clinic-2", name="Cy")
    return settings


@pytest.fixture
def platform(db: str, tmp_path: Path) -> Iterator[RenderedPlatform]:
    p = start_platform(db, tmp_path / "platform")
    try:
        yield p
    finally:
        p.stop()

"""Organisations and patients against the real database."""

from __future__ import annotations

import psycopg
import pytest

from provisioning import tenants
from provisioning.errors import Conflict, InvalidRequest, NotFound
from provisioning.settings import ProvisioningSettings


def test_create_and_refuse(settings: ProvisioningSettings) -> None:
    tenants.create_org(settings, "clinic-1", name="Clinic")
    tenants.create_patient(settings, "p1", org_id="clinic-1", name="Ann Example")
    with pytest.raises(Conflict) as taken:
        tenants.create_org(settings, "clinic-1", name="Again")
    assert (taken.value.kind, taken.value.key) == ("organisation", "clinic-1")
    with pytest.raises(Conflict):
        tenants.create_patient(settings, "p1", org_id="clinic-1", name="Someone else")
    with pytest.raises(NotFound) as missing:
        tenants.create_patient(settings, "p2", org_id="nowhere", name="Cy")
    assert (missing.value.kind, missing.value.key) == ("organisation", "nowhere")
    with pytest.raises(InvalidRequest) as bad:
        tenants.create_org(settings, "Clinic One; DROP TABLE agents", name="x")
    assert bad.value.field == "org_id"
    with psycopg.connect(settings.database_url) as conn:
        assert conn.execute("SELECT org_id FROM organizations ORDER BY 1").fetchall() == [("clinic-1",)]
        assert conn.execute("SELECT patient_id, display_name FROM patients").fetchall() == [("p1", "Ann Example")]


def test_a_patient_name_is_never_in_an_error(settings: ProvisioningSettings) -> None:
    tenants.create_org(settings, "clinic-1", name="Clinic")
    tenants.create_patient(settings, "p1", org_id="clinic-1", name="Ann Example")
    with pytest.raises(Conflict) as taken:
        tenants.create_patient(settings, "p1", org_id="clinic-1", name="Zed Secretname")
    assert "Secretname" not in str(taken.value)

"""Enrollment bundles: what a new agent is given and what the server keeps, and ids refused up front."""

from __future__ import annotations

from datetime import timedelta

import pytest

from broker_config.passwords import verify_password
from provisioning import keys
from provisioning.bundles import MAX_SERVER_KEYS, new_enrollment
from provisioning.errors import InvalidRequest, ServerKeyError
from provisioning.settings import ProvisioningSettings
from rpm_core.clock import ManualClock
from rpm_core.enrollment import EnrollmentBundle, token_digest


def test_a_bundle_and_what_is_stored_of_it(settings: ProvisioningSettings, clock: ManualClock) -> None:
    keys.init_keys(settings, now=clock.now())
    for _ in range(MAX_SERVER_KEYS + 1):
        keys.rotate_keys(settings)
    e = new_enrollment(settings, org_id="clinic-1", patient_id="p1", agent_id="agt-7", now=clock.now())
    b = e.bundle
    assert (e.org_id, e.patient_id, e.agent_id, b.org, b.agent_id, b.mqtt_username) == (
        "clinic-1", "p1", "agt-7", "clinic-1", "agt-7", "agt-7",
    )  # fmt: skip
    assert verify_password(b.mqtt_password.get_secret_value(), e.password_hash)
    assert e.token_sha256 == token_digest(b.enrollment_token.get_secret_value())
    assert e.expires_at == clock.now() + timedelta(hours=settings.enrollment_ttl_hours)
    ring = keys.keyring(settings)
    assert [k.kid for k in b.server_keys] == [k.kid for k in ring.public_keys()[:MAX_SERVER_KEYS]]
    assert b.server_keys[0].kid == ring.current.kid  # current first
    assert (b.broker.host, b.broker.port) == (settings.broker_host, settings.broker_port)
    assert b.broker.ca_pem == keys.ca_of(settings, now=clock.now()).cert_pem().decode()
    assert (e.account.username, e.account.clientid, e.account.password_hash) == ("agt-7", "agt-7", e.password_hash)
    assert EnrollmentBundle.from_json(b.to_json()) == b


def test_new_ids_are_random_and_secrets_never_in_a_repr(settings: ProvisioningSettings, clock: ManualClock) -> None:
    keys.init_keys(settings, now=clock.now())
    one = new_enrollment(settings, org_id="clinic-1", patient_id="p1", now=clock.now())
    two = new_enrollment(settings, org_id="clinic-1", patient_id="p1", now=clock.now())
    assert one.agent_id.startswith("agt-")
    assert one.agent_id != two.agent_id
    assert one.password != two.password
    shown = repr(one)
    assert one.agent_id in shown
    for secret in (one.password, one.bundle.enrollment_token.get_secret_value(), one.password_hash):
        assert secret not in shown


@pytest.mark.parametrize(
    ("org", "agent", "field"),
    [
        ("clinic-1", "vigil-ingest-1", "agent_id"),
        ("clinic-1", "vigil-admin", "agent_id"),
        ("clinic-1", "Agt 1", "agent_id"),
        ("clinic-1", "a" * 100_000, "agent_id"),
        ("clinic-1", "agt-\x00", "agent_id"),
        ("clinic/#", "agt-1", "org_id"),
        ("+", "agt-1", "org_id"),
    ],
)
def test_hostile_ids_are_refused_before_anything_is_written(
    settings: ProvisioningSettings, clock: ManualClock, org: str, agent: str, field: str
) -> None:
    keys.init_keys(settings, now=clock.now())
    with pytest.raises(InvalidRequest) as caught:
        new_enrollment(settings, org_id=org, patient_id="p1", agent_id=agent, now=clock.now())
    assert caught.value.field == field
    assert len(str(caught.value)) < 200  # a hostile id is never echoed in full
    assert "\x00" not in str(caught.value)
    assert not (settings.key_dir / "mqtt").exists()


def test_before_keys_init(settings: ProvisioningSettings, clock: ManualClock) -> None:
    with pytest.raises(ServerKeyError):
        new_enrollment(settings, org_id="clinic-1", patient_id="p1", now=clock.now())

"""The broker in step with the database, or the call fails and nothing is committed.

Against the production set-up (tests/support/platform.py: the real CLI provisions and renders,
Mosquitto runs the rendered file), calling provisioning as the clinician API does. Moved here from
tests/vigil_cli/test_agents.py (the commands are thin wrappers now): the assertions are those the
commands' tests made, on the values and exceptions the commands print.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import paho.mqtt.client as mqtt
import psycopg
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from broker_config.render import persisted_state
from provisioning import agents
from provisioning.broker import render, sync_broker
from provisioning.bundles import new_enrollment
from provisioning.errors import BrokerError, BrokerOutOfSync, DatabaseError
from provisioning.settings import ProvisioningSettings
from rpm_core.clock import SystemClock
from tests.provisioning.conftest import settings_of
from tests.support.platform import HOST, RenderedPlatform, reachable_dir, start_platform
from vigil_testkit.broker import connect_result, tls_context

CLOCK = SystemClock()


def agent_rows(db: str) -> list[tuple[str, str]]:
    with psycopg.connect(db) as conn:
        return [(r[0], r[1]) for r in conn.execute("SELECT agent_id, status FROM agents ORDER BY agent_id")]


def on_broker(platform: RenderedPlatform) -> set[str]:
    with platform.control() as ctl:
        return set(ctl.state().clients)


def in_file(platform: RenderedPlatform) -> set[str]:
    saved = persisted_state(platform.layout)
    assert saved is not None
    return set(saved.clients)


def create(settings: ProvisioningSettings, agent: str) -> agents.CreatedAgent:
    enrollment = new_enrollment(settings, org_id="clinic-1", patient_id="p1", agent_id=agent, now=CLOCK.now())
    return agents.create_agent(settings, enrollment, clock=CLOCK)


@contextmanager
def commit_fails_for(db: str, agent: str) -> Iterator[None]:
    """A deferred constraint trigger: the COMMIT of a transaction that inserted ``agent`` fails."""
    with psycopg.connect(db, autocommit=True) as conn:
        conn.execute(
            "CREATE FUNCTION test_doom() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
            f"IF NEW.agent_id = '{agent}' THEN RAISE EXCEPTION 'doomed at commit'; END IF; RETURN NULL; END $$"
        )
        conn.execute(
            "CREATE CONSTRAINT TRIGGER test_doom AFTER INSERT ON agents DEFERRABLE INITIALLY DEFERRED "
            "FOR EACH ROW EXECUTE FUNCTION test_doom()"
        )
    try:
        yield
    finally:
        with psycopg.connect(db, autocommit=True) as conn:
            conn.execute("DROP TRIGGER test_doom ON agents")
            conn.execute("DROP FUNCTION test_doom()")


def test_a_running_broker_gets_the_account_before_the_commit_and_loses_it_at_revoke(
    platform: RenderedPlatform,
) -> None:
    settings = settings_of(platform)
    created = create(settings, "agt-1")
    assert "updated through its control API" in created.note
    assert "agt-1" in on_broker(platform) & in_file(platform)
    sim = platform.sim_agent(created.bundle)
    sim.connect()
    dropped = threading.Event()
    sim.client.on_disconnect = lambda *_a: dropped.set()
    agents.revoke_agent(settings, "agt-1", clock=CLOCK)
    assert dropped.wait(10)  # at once, not at some later reload
    assert "agt-1" not in on_broker(platform) | in_file(platform)
    assert agent_rows(platform.db) == [("agt-1", "revoked")]
    # The revoked agent, holding its bundle, tries to come back: the broker refuses its login.
    again = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="agt-1", protocol=mqtt.MQTTv5)
    again.tls_set_context(tls_context(platform.layout.ca))
    again.username_pw_set("agt-1", created.bundle.mqtt_password.get_secret_value())
    refused = connect_result(again, HOST, platform.port)
    assert getattr(refused, "is_failure", False), refused


def test_a_commit_that_fails_takes_the_new_account_off_the_broker(platform: RenderedPlatform) -> None:
    with commit_fails_for(platform.db, "agt-doomed"), pytest.raises(DatabaseError) as caught:
        create(settings_of(platform), "agt-doomed")
    assert "doomed at commit" in str(caught.value)
    assert caught.value.cause == "rejected"
    assert agent_rows(platform.db) == []
    assert "agt-doomed" not in on_broker(platform) | in_file(platform)


def test_a_commit_that_fails_with_the_broker_stopped_renders_the_file_again(platform: RenderedPlatform) -> None:
    settings = settings_of(platform)
    platform.broker.stop()
    with commit_fails_for(platform.db, "agt-doomed"), pytest.raises(DatabaseError):
        create(settings, "agt-doomed")
    assert "agt-doomed" not in in_file(platform)
    assert "Mosquitto is not running" in create(settings, "agt-2").note
    assert "agt-2" in in_file(platform)


def test_an_unreachable_control_api_changes_nothing(platform: RenderedPlatform) -> None:
    settings = settings_of(platform)
    create(settings, "agt-1")
    (platform.key_dir / "mqtt" / "vigil-admin.password").write_text("not-the-password")
    with pytest.raises(BrokerError) as caught:
        create(settings, "agt-2")
    assert "refused vigil-admin" in str(caught.value)
    assert caught.value.cause == "broker_control_unavailable"
    with pytest.raises(BrokerError):
        agents.revoke_agent(settings, "agt-1", clock=CLOCK)
    assert agent_rows(platform.db) == [("agt-1", "pending")]  # neither the new agent nor the revocation


def test_a_broker_that_cannot_save_its_file_is_an_error(db: str, tmp_path: Path) -> None:
    with reachable_dir() as reachable:
        platform = start_platform(db, tmp_path / "platform", broker_dir=reachable / "broker", broker_user="mosquitto")
        try:
            cannot_save(platform)
        finally:
            platform.stop()


def cannot_save(platform: RenderedPlatform) -> None:
    """Mosquitto runs as mosquitto (started as root), and its accounts file is made read-only for it."""
    settings = settings_of(platform)
    create(settings, "agt-1")
    platform.layout.dynsec_file.chmod(0o400)
    try:
        with pytest.raises(BrokerOutOfSync) as caught:
            create(settings, "agt-2")
        assert "could not save" in str(caught.value)
        assert agent_rows(platform.db) == [("agt-1", "pending")]
        assert "agt-2" not in on_broker(platform)  # taken off again
        with pytest.raises(BrokerOutOfSync) as revoke:
            agents.revoke_agent(settings, "agt-1", clock=CLOCK)
        assert "vigil broker sync" in str(revoke.value)
        assert agent_rows(platform.db) == [("agt-1", "revoked")]  # the revocation holds: the safe side
        assert "agt-1" not in on_broker(platform)
        assert "agt-1" in in_file(platform)  # what a restart would have readmitted
    finally:
        platform.layout.dynsec_file.chmod(0o600)
    assert "0 created, 0 removed, 0 repaired" in sync_broker(settings)
    assert "agt-1" not in in_file(platform)


def test_sync_and_render_reconcile_a_running_broker(platform: RenderedPlatform) -> None:
    settings = settings_of(platform)
    create(settings, "agt-1")
    with platform.control() as ctl:
        ctl.run([{"command": "createClient", "username": "stray", "password": "x"}])
        ctl.delete("agt-1")  # lost: only its hash is in the database
    with pytest.raises(BrokerOutOfSync) as caught:
        sync_broker(settings)
    assert "lacks 1 agent account(s) (agt-1)" in str(caught.value)
    assert "stray" not in on_broker(platform)
    platform.broker.stop()
    stopped = render(settings, now=CLOCK.now())
    assert stopped.running_pid is None
    assert "Mosquitto is not running" not in stopped.note
    assert "agt-1" in in_file(platform)
    platform.broker.start()
    assert "agt-1" in on_broker(platform)
    running = render(settings, now=CLOCK.now())
    assert running.running_pid is not None
    assert "in line with the database: 0 created, 0 removed, 0 repaired" in running.note
    with pytest.raises(BrokerError) as without:
        render(settings, now=CLOCK.now(), with_agents=False)
    assert "would remove every agent" in str(without.value)


def test_sync_before_render_is_refused(settings: ProvisioningSettings) -> None:
    with pytest.raises(BrokerOutOfSync) as caught:
        sync_broker(settings)
    assert "run `vigil broker render` first" in str(caught.value)

"""Issue 10, item 5: an agent named like a service account.

``vigil agents create --agent vigil-ingest`` used to succeed and write a second password line for
the ingest account (the last one won): the agent logged in as ingest. Now the ``vigil-`` prefix is
reserved for service accounts, an id colliding with any account is refused with a clear error, and
nothing is written: no database row, no broker account, no bundle. Against a running broker set up
with the real commands, so the refusal is also checked where it matters (the broker's accounts).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import psycopg
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from broker_config.render import persisted_state
from tests.support.platform import HOST, RenderedPlatform, start_platform
from vigil_testkit.broker import connect_result, tls_context


@pytest.fixture
def platform(db: str, tmp_path: Path) -> Iterator[RenderedPlatform]:
    p = start_platform(db, tmp_path)
    try:
        yield p
    finally:
        p.stop()


def broker_client(platform: RenderedPlatform, username: str, password: str) -> mqtt.Client:
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=username, protocol=mqtt.MQTTv5)
    c.tls_set_context(tls_context(platform.layout.ca))
    c.username_pw_set(username, password)
    return c


def agents_in_db(db: str) -> list[str]:
    with psycopg.connect(db) as conn:
        return [r[0] for r in conn.execute("SELECT agent_id FROM agents ORDER BY agent_id")]


def broker_accounts(platform: RenderedPlatform) -> set[str]:
    with platform.control() as ctl:
        return set(ctl.state().clients)


@pytest.mark.parametrize(
    "name", ["vigil-ingest", "vigil-ingest-1", "vigil-ingest-4", "vigil-ingest-99", "vigil-admin", "vigil-anything"]
)
def test_service_names_are_refused(platform: RenderedPlatform, name: str) -> None:
    before = broker_accounts(platform)
    bundle = platform.workdir / "bundle.json"
    result = platform.vigil(
        "agents", "create", "--org", "clinic-1", "--patient", "p1", "--agent", name, "--out", str(bundle), ok=False
    )
    assert result.exit_code == 2, result.output
    assert "reserved for Vigil's service accounts" in result.output
    assert name in result.output
    assert not bundle.exists()
    assert agents_in_db(platform.db) == []
    assert broker_accounts(platform) == before
    # The ingest account still logs in with its own password (the old second line replaced it).
    ingest = connect_result(broker_client(platform, "vigil-ingest-1", platform.ingest_password()), HOST, platform.port)
    assert getattr(ingest, "value", None) == 0
    saved = persisted_state(platform.layout)
    assert saved is not None
    assert set(saved.clients) == before


def test_an_existing_agents_id_is_refused_and_its_account_untouched(platform: RenderedPlatform) -> None:
    first = platform.create_agent("agt-1")
    victim = platform.sim_agent(first)
    victim.connect()
    result = platform.vigil(
        "agents", "create", "--org", "clinic-1", "--patient", "p1", "--agent", "agt-1", "--out",
        str(platform.workdir / "again.json"), ok=False,
    )  # fmt: skip
    assert result.exit_code == 1
    assert "agent 'agt-1': exists already" in result.output
    assert agents_in_db(platform.db) == ["agt-1"]
    assert victim.client.is_connected()  # its account was not replaced (that would have disconnected it)
    topic, data = victim.sealed([])
    assert victim.publish_raw(topic, data) < 0x80


def test_an_id_the_broker_holds_but_the_database_does_not_is_refused(platform: RenderedPlatform) -> None:
    """An account left on the broker (say, created by hand): the agent is not created over it."""
    with platform.control() as ctl:
        ctl.run([{"command": "createClient", "username": "agt-stale", "password": "known-to-someone", "clientid": "x"}])
    result = platform.vigil(
        "agents", "create", "--org", "clinic-1", "--patient", "p1", "--agent", "agt-stale", "--out",
        str(platform.workdir / "stale.json"), ok=False,
    )  # fmt: skip
    assert result.exit_code == 1
    assert "has an account 'agt-stale' already" in result.output
    assert agents_in_db(platform.db) == []  # rolled back: the database and the broker agree

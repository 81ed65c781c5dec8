"""``vigil broker render`` and ``vigil agents``, in process, against the test database."""

from __future__ import annotations

import json
import stat
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
import pytest
from click.testing import Result
from typer.testing import CliRunner

from broker_config.dynsec import parse_file
from broker_config.passwords import verify_password
from broker_config.render import persisted_state
from rpm_core.enrollment import EnrollmentBundle, token_digest
from tests.support.platform import RenderedPlatform, reachable_dir, start_platform
from vigil_cli.main import build_app

runner = CliRunner()


@pytest.fixture
def env(db: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("VIGIL_DATABASE_URL", db)
    monkeypatch.setenv("VIGIL_KEY_DIR", str(tmp_path / "keys"))
    monkeypatch.setenv("VIGIL_BROKER_DIR", str(tmp_path / "broker"))
    monkeypatch.setenv("VIGIL_BROKER_USER", "root")
    return tmp_path


def vigil(*args: str) -> str:
    result = runner.invoke(build_app(), list(args))
    assert result.exit_code == 0, (result.output, result.exception)
    return result.output


def test_create_enroll_assign_revoke(env: Path, db: str) -> None:
    vigil("agents", "keys", "init")
    vigil("agents", "org", "create", "clinic-1", "--name", "Clinic")
    vigil("agents", "patient", "create", "p1", "--org", "clinic-1", "--name", "Ann")
    vigil("agents", "patient", "create", "p2", "--org", "clinic-1", "--name", "Bob")
    assert "wrote" in vigil("broker", "render")
    conf = (env / "broker" / "mosquitto.conf").read_text()
    assert "pid_file" in conf
    assert "tls_version tlsv1.2" in conf
    bundle_path = env / "bundle.json"
    vigil("agents", "create", "--org", "clinic-1", "--patient", "p1", "--agent", "agt-1", "--out", str(bundle_path))
    assert stat.S_IMODE(bundle_path.stat().st_mode) == 0o600
    bundle = EnrollmentBundle.read(bundle_path)
    assert bundle.agent_id == "agt-1"
    assert bundle.broker.ca_pem.startswith("-----BEGIN CERTIFICATE-----")
    doc = json.loads((env / "broker" / "dynsec" / "dynsec.json").read_text())
    client = next(c for c in doc["clients"] if c["username"] == "agt-1")
    assert client["clientid"] == "agt-1"
    hashed = f"$7${client['iterations']}${client['salt']}${client['password']}"
    assert verify_password(bundle.mqtt_password.get_secret_value(), hashed)
    state = parse_file(doc)
    assert ("publishClientSend", "vigil/v1/clinic-1/agt-1/up/#", True) in state.roles["agt-1"]
    assert set(state.clients) == {"agt-1", "vigil-admin", *(f"vigil-ingest-{n}" for n in range(1, 5))}
    with psycopg.connect(db) as conn:
        row = conn.execute("SELECT status, enrollment_token_sha256 FROM agents").fetchone()
        assert row == ("pending", token_digest(bundle.enrollment_token.get_secret_value()))
    vigil("agents", "assign", "agt-1", "--patient", "p2")
    assert "\tp2\t" in vigil("agents", "list")
    vigil("agents", "revoke", "agt-1")
    state = parse_file(json.loads((env / "broker" / "dynsec" / "dynsec.json").read_text()))
    assert "agt-1" not in state.clients
    assert "agt-1" not in state.roles
    with psycopg.connect(db) as conn:
        assert conn.execute("SELECT status FROM agents").fetchone() == ("revoked",)
        assert conn.execute("SELECT count(*) FROM agent_assignments").fetchone() == (2,)


def test_unknown_patient_or_org_is_refused(env: Path) -> None:
    vigil("agents", "keys", "init")
    args = ["agents", "create", "--org", "nowhere", "--patient", "p1", "--out", str(env / "bundle.json")]
    result = runner.invoke(build_app(), args)
    assert result.exit_code == 1
    assert "no organisation" in result.output


def test_keys_rotate_and_retire(env: Path) -> None:
    vigil("agents", "keys", "init")
    vigil("agents", "keys", "rotate")
    listing = vigil("agents", "keys", "list")
    assert listing.count("\n") == 2
    assert "current" in listing.splitlines()[1]
    assert "retired generations [1]" in vigil("agents", "keys", "retire", "--keep", "1")


# -- the broker in step with the database, or the command fails and nothing is committed ----------


@pytest.fixture
def platform(db: str, tmp_path: Path) -> Iterator[RenderedPlatform]:
    p = start_platform(db, tmp_path / "platform")
    try:
        yield p
    finally:
        p.stop()


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


def create(platform: RenderedPlatform, agent: str, *, ok: bool = True) -> Result:
    out = platform.workdir / f"{agent}.json"
    return platform.vigil(
        "agents", "create", "--org", "clinic-1", "--patient", "p1", "--agent", agent, "--out", str(out), ok=ok
    )


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
    result = create(platform, "agt-1")
    assert "updated through its control API" in result.output
    assert "agt-1" in on_broker(platform) & in_file(platform)
    sim = platform.sim_agent(EnrollmentBundle.read(platform.workdir / "agt-1.json"))
    sim.connect()
    dropped = threading.Event()
    sim.client.on_disconnect = lambda *_a: dropped.set()
    platform.vigil("agents", "revoke", "agt-1")
    assert dropped.wait(10)  # at once, not at some later reload
    assert "agt-1" not in on_broker(platform) | in_file(platform)
    assert agent_rows(platform.db) == [("agt-1", "revoked")]


def test_a_commit_that_fails_takes_the_new_account_off_the_broker(platform: RenderedPlatform) -> None:
    with commit_fails_for(platform.db, "agt-doomed"):
        result = create(platform, "agt-doomed", ok=False)
    assert result.exit_code == 1
    assert "doomed at commit" in result.output
    assert agent_rows(platform.db) == []
    assert "agt-doomed" not in on_broker(platform) | in_file(platform)
    assert not (platform.workdir / "agt-doomed.json").exists()


def test_a_commit_that_fails_with_the_broker_stopped_renders_the_file_again(platform: RenderedPlatform) -> None:
    platform.broker.stop()
    with commit_fails_for(platform.db, "agt-doomed"):
        assert create(platform, "agt-doomed", ok=False).exit_code == 1
    assert "agt-doomed" not in in_file(platform)
    assert "Mosquitto is not running" in create(platform, "agt-2").output
    assert "agt-2" in in_file(platform)


def test_an_unreachable_control_api_changes_nothing(platform: RenderedPlatform) -> None:
    create(platform, "agt-1")
    (platform.key_dir / "mqtt" / "vigil-admin.password").write_text("not-the-password")
    result = create(platform, "agt-2", ok=False)
    assert result.exit_code == 1
    assert "refused vigil-admin" in result.output
    revoke = platform.vigil("agents", "revoke", "agt-1", ok=False)
    assert revoke.exit_code == 1
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
    create(platform, "agt-1")
    platform.layout.dynsec_file.chmod(0o400)
    try:
        result = create(platform, "agt-2", ok=False)
        assert result.exit_code == 1
        assert "could not save" in result.output
        assert agent_rows(platform.db) == [("agt-1", "pending")]
        assert "agt-2" not in on_broker(platform)  # taken off again
        revoke = platform.vigil("agents", "revoke", "agt-1", ok=False)
        assert revoke.exit_code == 1
        assert "vigil broker sync" in revoke.output
        assert agent_rows(platform.db) == [("agt-1", "revoked")]  # the revocation holds: the safe side
        assert "agt-1" not in on_broker(platform)
        assert "agt-1" in in_file(platform)  # what a restart would have readmitted
    finally:
        platform.layout.dynsec_file.chmod(0o600)
    assert "0 created, 0 removed, 0 repaired" in platform.vigil("broker", "sync").output
    assert "agt-1" not in in_file(platform)


def test_sync_and_render_reconcile_a_running_broker(platform: RenderedPlatform) -> None:
    create(platform, "agt-1")
    with platform.control() as ctl:
        ctl.run([{"command": "createClient", "username": "stray", "password": "x"}])
        ctl.delete("agt-1")  # lost: only its hash is in the database
    result = platform.vigil("broker", "sync", ok=False)
    assert result.exit_code == 1
    assert "lacks 1 agent account(s) (agt-1)" in result.output
    assert "stray" not in on_broker(platform)
    platform.broker.stop()
    assert "Mosquitto is not running" not in platform.vigil("broker", "render").output
    assert "agt-1" in in_file(platform)
    platform.broker.start()
    assert "agt-1" in on_broker(platform)
    running = platform.vigil("broker", "render")
    assert "in line with the database: 0 created, 0 removed, 0 repaired" in running.output
    without = platform.vigil("broker", "render", "--without-agents", ok=False)
    assert without.exit_code == 1
    assert "would remove every agent" in without.output

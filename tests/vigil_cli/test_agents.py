"""``vigil broker render`` and ``vigil agents``, in process, against the test database: the commands'
output, files and exit codes (what they do is tests/provisioning's)."""

from __future__ import annotations

import json
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
import pytest
from typer.testing import CliRunner

from broker_config.dynsec import parse_file
from broker_config.passwords import verify_password
from rpm_core.enrollment import EnrollmentBundle, token_digest
from tests.support.platform import RenderedPlatform, start_platform
from vigil_cli.main import build_app
from vigil_testkit.net import free_port

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


# -- failures: the error on stderr, exit 1, nothing written ---------------------------------------
# The broker-in-step scenarios themselves are tests/provisioning/test_broker.py's.


@pytest.fixture
def platform(db: str, tmp_path: Path) -> Iterator[RenderedPlatform]:
    p = start_platform(db, tmp_path / "platform")
    try:
        yield p
    finally:
        p.stop()


def test_a_failing_step_prints_its_error_and_exits_1(platform: RenderedPlatform) -> None:
    out = platform.workdir / "agt-doomed.json"
    with commit_fails_for(platform.db, "agt-doomed"):
        result = platform.vigil(
            "agents", "create", "--org", "clinic-1", "--patient", "p1", "--agent", "agt-doomed", "--out", str(out),
            ok=False,
        )  # fmt: skip
    assert result.exit_code == 1
    assert "error: the database refused the change: doomed at commit" in result.output
    assert not out.exists()
    with psycopg.connect(platform.db) as conn:
        assert conn.execute("SELECT count(*) FROM agents").fetchone() == (0,)
    without = platform.vigil("broker", "render", "--without-agents", ok=False)
    assert without.exit_code == 1
    assert "would remove every agent" in without.output
    revoke = platform.vigil("agents", "revoke", "agt-404", ok=False)
    assert revoke.exit_code == 1
    assert "error: no agent 'agt-404'" in revoke.output


def test_database_unreachable(env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VIGIL_DATABASE_URL", f"postgresql://127.0.0.1:{free_port()}/vigil")
    result = runner.invoke(build_app(), ["agents", "list"])
    assert result.exit_code == 1
    assert "error: cannot connect to the database: unreachable" in result.output


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

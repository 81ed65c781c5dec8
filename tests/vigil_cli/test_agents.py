"""``vigil broker render`` and ``vigil agents``, in process, against the test database."""

from __future__ import annotations

import stat
from pathlib import Path

import psycopg
import pytest
from typer.testing import CliRunner

from broker_config.passwords import verify_password
from rpm_core.enrollment import EnrollmentBundle, token_digest
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
    passwd = (env / "broker" / "passwd").read_text()
    line = next(x for x in passwd.splitlines() if x.startswith("agt-1:"))
    assert verify_password(bundle.mqtt_password.get_secret_value(), line.split(":", 1)[1])
    assert "topic write vigil/v1/clinic-1/agt-1/up/#" in (env / "broker" / "acl").read_text()
    with psycopg.connect(db) as conn:
        row = conn.execute("SELECT status, enrollment_token_sha256 FROM agents").fetchone()
        assert row == ("pending", token_digest(bundle.enrollment_token.get_secret_value()))
    vigil("agents", "assign", "agt-1", "--patient", "p2")
    assert "\tp2\t" in vigil("agents", "list")
    vigil("agents", "revoke", "agt-1")
    assert "agt-1:" not in (env / "broker" / "passwd").read_text()
    assert "agt-1" not in (env / "broker" / "acl").read_text()
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

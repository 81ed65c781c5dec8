"""``vigil edge enroll``: keys generated here with mode 0600, identity files, outbox and config."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from edge_agent.cli import app
from edge_agent.enroll import enroll
from edge_agent.errors import EnrollmentError
from edge_agent.identity import AgentIdentity, IdentityFiles
from edge_agent.outbox import inspect_outbox
from edge_agent.settings import load_edge_settings
from rpm_core.clock import ManualClock
from rpm_core.enrollment import BrokerEndpoint, EnrollmentBundle, ServerKeyInfo, new_token
from rpm_core.ids import agent_id, org_id
from rpm_core.keys import ServerKey

NOW = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)
SERVER = ServerKey.generate()


def bundle(expires: datetime = NOW + timedelta(days=7)) -> EnrollmentBundle:
    return EnrollmentBundle(
        org=org_id("clinic-1"),
        agent_id=agent_id("agt-0042"),
        broker=BrokerEndpoint(host="10.0.0.5", port=8883, server_name="mqtt.vigil.example", ca_pem="CA PEM"),
        mqtt_username="agt-0042",
        mqtt_password="mqtt-secret",  # type: ignore[arg-type]
        enrollment_token=new_token(),  # type: ignore[arg-type]
        server_keys=(ServerKeyInfo.of(SERVER.public()),),
        expires_at=expires,
    )


@pytest.fixture
def bundle_file(tmp_path: Path) -> Path:
    path = tmp_path / "bundle.json"
    path.write_text(bundle(expires=datetime.now(UTC) + timedelta(days=7)).to_json())
    return path


def test_enroll_writes_private_files_outbox_and_config(tmp_path: Path, bundle_file: Path) -> None:
    directory, state = tmp_path / "etc" / "vigil" / "edge", tmp_path / "var" / "lib" / "vigil-edge"
    result = enroll(
        bundle_file, directory=directory, state_dir=state, clock=ManualClock(NOW), time_zone="Europe/Berlin"
    )
    files = IdentityFiles(directory)
    assert directory.stat().st_mode & 0o777 == 0o700
    for path in files.private_files():
        assert path.stat().st_mode & 0o777 == 0o600, path
    assert files.ca.read_text() == "CA PEM"
    assert json.loads(files.credentials.read_text())["mqtt_password"] == "mqtt-secret"
    settings = load_edge_settings(result.config)
    assert (settings.agent, settings.broker_host, settings.broker_server_name, settings.time_zone) == (
        "agt-0042", "10.0.0.5", "mqtt.vigil.example", "Europe/Berlin")  # fmt: skip
    assert (settings.enrollment_dir, settings.state_dir) == (directory, state)
    identity = AgentIdentity.load(directory, org=settings.org_id, agent=settings.agent)
    assert identity.keys.public().sign_kid == result.sign_kid
    assert identity.server == SERVER.public()
    assert "mqtt-secret" not in repr(identity)
    assert inspect_outbox(result.outbox).stats.last_allocated == 0


def test_enroll_refuses_expired_bundles_and_second_enrollment(tmp_path: Path, bundle_file: Path) -> None:
    old = tmp_path / "old.json"
    old.write_text(bundle(expires=NOW - timedelta(seconds=1)).to_json())
    kwargs = {
        "directory": tmp_path / "etc",
        "state_dir": tmp_path / "state",
        "clock": ManualClock(NOW),
        "time_zone": "UTC",
    }
    with pytest.raises(EnrollmentError, match="expired"):
        enroll(old, **kwargs)  # type: ignore[arg-type]
    first = enroll(bundle_file, **kwargs)  # type: ignore[arg-type]
    with pytest.raises(EnrollmentError, match="already enrolled"):
        enroll(bundle_file, **kwargs)  # type: ignore[arg-type]
    second = enroll(bundle_file, force=True, **kwargs)  # type: ignore[arg-type]
    assert second.sign_kid != first.sign_kid
    assert second.retired is not None
    assert second.retired.parent == tmp_path / "state" / "retired"
    assert second.retired.name.endswith("-agt-0042")
    kept = {str(p.relative_to(second.retired)) for p in second.retired.rglob("*") if p.is_file()}
    assert kept == {"outbox.db", "retired.json", "ca.pem", "server_keys.json", "credentials.json",
                    "keys/sign.pem", "keys/kex.pem", "keys/outbox.key"}  # fmt: skip


def test_cli_enroll_and_status(tmp_path: Path, bundle_file: Path) -> None:
    runner = CliRunner()
    args = ["enroll", "--bundle", str(bundle_file), "--dir", str(tmp_path / "etc"), "--state-dir", str(tmp_path / "st")]
    result = runner.invoke(app, [*args, "--time-zone", "UTC"])
    assert result.exit_code == 0, result.output
    assert "delete it now" in result.stdout
    status = runner.invoke(app, ["status", "--config", str(tmp_path / "etc" / "agent.toml"), "--json"])
    assert status.exit_code == 0, status.output
    doc = json.loads(status.stdout)
    assert (doc["agent"], doc["registered"], doc["outbox"]["depth"], doc["last_receipt"]["through"]) == (
        "agt-0042", False, 0, 0)  # fmt: skip
    again = runner.invoke(app, [*args, "--time-zone", "UTC"])
    assert again.exit_code == 1
    assert "already enrolled" in again.stderr

"""Issue 10 item 12: secrets go to a 0600 file (or, asked for explicitly, stdout with a warning), and
the agent does not keep its one-time enrollment token once the server has accepted it.

Through the real commands against the production-set-up platform of tests/e2e: ``vigil agents
create`` in each output mode, then ``vigil edge enroll`` and the real agent registering with the
real ``vigil ingest``. The attacks are a careless operator (a bundle in a terminal's scrollback or
a CI log) and someone who later reads the Pi's files: neither finds a secret they should not.
"""

from __future__ import annotations

import asyncio
import json
import stat
from pathlib import Path

import pytest
from click.testing import Result
from typer.testing import CliRunner

from edge_agent.outbox import SqliteOutbox
from rpm_core.clock import SystemClock
from rpm_core.enrollment import EnrollmentBundle
from tests.e2e import test_edge_to_store as e2e
from tests.e2e.test_edge_to_store import Platform
from tests.edge_agent.live import (
    ORG,
    PATIENT,
    add_readings,
    enroll,
    identity_of,
    platform_env,
    registered,
    rows,
    running_agent,
    scalar,
    settings_of,
    until,
    utc,
)
from tests.ingest.conftest import IngestProcess
from vigil_cli.agents import app as agents_app

platform, ingest = e2e.platform, e2e.ingest  # fixtures


def create(platform: Platform, agent: str, *out: str) -> Result:
    args = ["create", "--org", ORG, "--patient", PATIENT, "--agent", agent, *out]
    return CliRunner().invoke(agents_app, args, env=platform_env(platform))


def agent_exists(platform: Platform, agent: str) -> bool:
    return bool(scalar(platform.db, "SELECT count(*) FROM agents WHERE agent_id = %s", agent))


def files_containing(root: Path, secret: str) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() and secret.encode() in p.read_bytes()]


def test_create_without_out_refuses_and_prints_no_secret(platform: Platform) -> None:
    result = create(platform, "agt-sec-1")
    assert result.exit_code == 2, result.output
    assert "--out FILE is required" in result.stderr
    assert "mqtt_password" not in result.output
    assert "enrollment_token" not in result.output
    assert not agent_exists(platform, "agt-sec-1")  # nothing created whose secrets nobody received


def test_create_to_a_file_writes_0600_and_prints_no_secret(platform: Platform, tmp_path: Path) -> None:
    out = tmp_path / "bundles" / "b.json"
    result = create(platform, "agt-sec-2", "--out", str(out))
    assert result.exit_code == 0, result.output
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    bundle = EnrollmentBundle.read(out)
    for secret in (bundle.mqtt_password.get_secret_value(), bundle.enrollment_token.get_secret_value()):
        assert secret not in result.output
    assert f"bundle written to {out} (mode 0600)" in result.stderr


def test_create_to_stdout_only_on_request_and_with_a_warning(platform: Platform) -> None:
    result = create(platform, "agt-sec-3", "--out", "-")
    assert result.exit_code == 0, result.output
    bundle = EnrollmentBundle.from_json(result.stdout)
    assert bundle.agent_id == "agt-sec-3"
    assert "warning: the bundle on stdout holds the broker password and enrollment token" in result.stderr


@pytest.mark.slow
@pytest.mark.asyncio
async def test_the_spent_enrollment_token_is_deleted_after_registration(
    platform: Platform, ingest: IngestProcess, tmp_path: Path
) -> None:
    edge, state = tmp_path / "edge", tmp_path / "edge-state"
    token = (await asyncio.to_thread(EnrollmentBundle.read, platform.bundle)).enrollment_token.get_secret_value()
    await asyncio.to_thread(enroll, platform.bundle, edge, state)
    credentials = json.loads(await asyncio.to_thread((edge / "credentials.json").read_text))
    assert set(credentials) == {"mqtt_username", "mqtt_password", "bundle_expires_at"}
    assert await asyncio.to_thread(files_containing, edge, token) == []  # sealed in the outbox, not in clear
    assert await asyncio.to_thread(files_containing, state, token) == []

    await asyncio.to_thread(ingest.start)
    async with running_agent(edge) as agent:
        await until(lambda: registered(state), 60, "the registration accepted", agent=agent)
    assert await asyncio.to_thread(outbox_token, edge) is None  # deleted with the acceptance, in one transaction
    assert "enrollment_token" not in json.loads(await asyncio.to_thread((edge / "credentials.json").read_text))
    assert await asyncio.to_thread(scalar, platform.db, "SELECT status FROM agents WHERE agent_id = %s", e2e.AGENT) == (
        "active"
    )

    # Registered once, the agent never needs the token again: after a restart it delivers readings.
    stored = await asyncio.to_thread(add_readings, edge, [72.0, 73.0], start=utc(2026, 3, 4, 9, 0))
    async with running_agent(edge) as agent:
        await until(lambda: len(rows(platform.db, e2e.AGENT)) == 2, 60, "readings stored after restart", agent=agent)
    assert [r[0] for r in await asyncio.to_thread(rows, platform.db, e2e.AGENT)] == [r.seq for r in stored]
    assert await asyncio.to_thread(scalar, platform.db, "SELECT count(*) FROM dead_letters") == 0


def outbox_token(edge: Path) -> str | None:
    s, ident = settings_of(edge), identity_of(edge)
    outbox = SqliteOutbox.open(
        s.outbox_path, key=ident.outbox_key, agent=ident.agent, kid=ident.keys.public().kex_kid,
        clock=SystemClock(), max_readings=s.outbox_max_readings,
    )  # fmt: skip
    try:
        return outbox.enrollment_token()
    finally:
        outbox.close()


def test_a_bundle_that_cannot_be_written_says_which_agent_to_revoke(platform: Platform, tmp_path: Path) -> None:
    not_a_dir = tmp_path / "plain-file"
    not_a_dir.write_text("")
    result = create(platform, "agt-sec-4", "--out", str(not_a_dir / "b.json"))
    assert result.exit_code == 1, result.output
    assert "agent agt-sec-4 exists without a bundle" in result.stderr
    assert "vigil agents revoke agt-sec-4" in result.stderr
    assert "mqtt_password" not in result.output

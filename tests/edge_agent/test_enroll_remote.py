"""``vigil edge enroll --url --token`` against a real `vigil api` serving HTTPS: the token's pin is
enough to trust the server (no CA file, one command line), the bundle is fetched once and the
identity written; a token whose pin names another key is never sent; plain HTTP is refused; with
``--ca-file`` the chain and host name are checked instead."""

from __future__ import annotations

import os
import ssl
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx
import psycopg
import pyotp
import pytest

from broker_config.ca import create_ca, issue_server_certificate, load_or_create_ca
from clinician_api.provisioning import spki_pin
from rpm_core.keystore import create_server_key
from tests.clinician_api.world import PASSWORD, SECRET_KEY, World, build
from tests.support.api_process import ApiProcess, api_env, running_api

pytestmark = pytest.mark.slow
VIGIL = [sys.executable, "-m", "vigil_cli"]


@dataclass
class Tls:
    world: World
    api: ApiProcess
    ca_file: Path
    pin: str


@pytest.fixture
def tls_api(db: str, tmp_path: Path) -> Iterator[Tls]:
    world = build(db)
    now = datetime.now(UTC)
    keys = tmp_path / "keys"
    create_server_key(keys)
    load_or_create_ca(keys, now=now)
    ca = create_ca(now=now, common_name="API test CA")
    server = issue_server_certificate(ca, ["127.0.0.1"], now=now)
    server.write(tmp_path / "api.pem", tmp_path / "api.key")
    (tmp_path / "api-ca.pem").write_bytes(ca.cert_pem())
    env = api_env(
        db,
        SECRET_KEY,
        VIGIL_KEY_DIR=str(keys),
        VIGIL_BROKER_DIR=str(tmp_path / "broker"),
        VIGIL_API_TLS_CERT_FILE=str(tmp_path / "api.pem"),
        VIGIL_API_TLS_KEY_FILE=str(tmp_path / "api.key"),
    )
    with running_api(env, scheme="https") as api:
        yield Tls(world, api, tmp_path / "api-ca.pem", spki_pin(server.cert_pem()))


def _token(site: Tls, patient: str) -> dict[str, str]:
    acct = site.world["a1"]
    trust = ssl.create_default_context(cafile=str(site.ca_file))
    with httpx.Client(base_url=site.api.base, verify=trust, timeout=10) as c:
        r = c.post("/api/v1/auth/login", json={"email": acct.email, "password": PASSWORD})
        c.headers["x-csrf-token"] = r.json()["csrf_token"]
        assert acct.totp
        c.post("/api/v1/auth/totp/verify", json={"code": pyotp.TOTP(acct.totp).now()}).raise_for_status()
        r = c.post("/api/v1/admin/enrolment-tokens", json={"patient_id": patient})
        r.raise_for_status()
        out: dict[str, str] = r.json()
        return out


def _enroll(tmp: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            *VIGIL,
            "edge",
            "enroll",
            *args,
            "--dir",
            str(tmp / "etc"),
            "--state-dir",
            str(tmp / "state"),
            "--time-zone",
            "UTC",
            "--owner",
            "nobody-here",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "VIGIL_CONFIG": ""},
        check=False,
    )


def _exchanges(url: str) -> list[str]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT outcome FROM audit_log WHERE action = 'enrolment.exchange' ORDER BY audit_id"
        ).fetchall()
    return [r[0] for r in rows]


def test_one_command_line_enrols_a_pi_over_https(tls_api: Tls, tmp_path: Path) -> None:
    issued = _token(tls_api, "p1")
    assert issued["token"].endswith("." + tls_api.pin)  # the pin travels in the token
    assert issued["command"].startswith("vigil edge enroll --url ")
    done = _enroll(tmp_path / "pi", "--url", tls_api.api.base, "--token", issued["token"])
    assert done.returncode == 0, done.stderr
    config = (tmp_path / "pi" / "etc" / "agent.toml").read_text()
    assert 'org = "o1"' in config
    assert not list((tmp_path / "pi" / "etc").glob(".bundle-*"))  # the fetched bundle is gone
    with psycopg.connect(tls_api.world.url) as conn:
        status, patient = conn.execute(
            "SELECT g.status, a.patient_id FROM agents g JOIN agent_assignments a USING (agent_id)"
        ).fetchone()
    assert (status, patient) == ("pending", "p1")
    again = _enroll(tmp_path / "pi2", "--url", tls_api.api.base, "--token", issued["token"])
    assert again.returncode != 0
    assert "refused the token" in again.stderr
    assert _exchanges(tls_api.world.url) == ["success", "failed"]


def test_a_wrong_pin_or_plain_http_never_sends_the_token(tls_api: Tls, tmp_path: Path) -> None:
    issued = _token(tls_api, "p2")
    other = issue_server_certificate(create_ca(now=datetime.now(UTC)), ["127.0.0.1"], now=datetime.now(UTC))
    wrong = issued["token"].rsplit(".", 1)[0] + "." + spki_pin(other.cert_pem())
    done = _enroll(tmp_path / "pi", "--url", tls_api.api.base, "--token", wrong)
    assert done.returncode != 0
    assert "not the one the token names" in done.stderr
    plain = _enroll(tmp_path / "pi", "--url", tls_api.api.base.replace("https", "http"), "--token", issued["token"])
    assert plain.returncode != 0
    assert "must be https" in plain.stderr
    assert _exchanges(tls_api.world.url) == []  # the server never saw the token
    # With the API's CA instead of a pin, the chain and the host name are checked.
    unpinned = issued["token"].rsplit(".", 1)[0] + "."
    ok = _enroll(tmp_path / "pi", "--url", tls_api.api.base, "--token", unpinned, "--ca-file", str(tls_api.ca_file))
    assert ok.returncode == 0, ok.stderr

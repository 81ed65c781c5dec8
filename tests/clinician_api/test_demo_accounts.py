"""`vigil api demo-accounts`: the demo's clinician and admin, signed in through the real TOTP flow
with the secret it prints; a second run keeps the authenticator and changes the password."""

from __future__ import annotations

import json
import subprocess
import sys

import psycopg
import pyotp
import pytest

from tests.clinician_api.world import SECRET_KEY, T0, add_readings
from tests.support.api_process import api_env


def _run(url: str) -> dict:
    out = subprocess.run(
        [sys.executable, "-m", "vigil_cli", "api", "demo-accounts", "--org", "o1"],
        env=api_env(url, SECRET_KEY),
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    return json.loads(out.stdout)


@pytest.mark.asyncio
async def test_demo_accounts_sign_in_with_the_printed_totp(world, client) -> None:
    add_readings(world.url, "o1", "p3", "spo2", [(T0, 97.0)])
    first = _run(world.url)
    second = _run(world.url)
    by_role = {a["role"]: a for a in second["accounts"]}
    assert set(by_role) == {"clinician", "admin"}
    assert [a["totp_secret"] for a in first["accounts"]] == [a["totp_secret"] for a in second["accounts"]]
    assert [a["password"] for a in first["accounts"]] != [a["password"] for a in second["accounts"]]
    clinician = by_role["clinician"]
    r = await client.post("/api/v1/auth/login", json={"email": clinician["email"], "password": clinician["password"]})
    assert r.status_code == 200, r.text
    client.headers["x-csrf-token"] = r.json()["csrf_token"]
    code = pyotp.TOTP(clinician["totp_secret"]).at(T0)
    assert (await client.post("/api/v1/auth/totp/verify", json={"code": code})).status_code == 200
    panel = (await client.get("/api/v1/patients")).json()
    assert {p["patient_id"] for p in panel["items"]} == {"p1", "p2", "p3"}  # every patient of o1
    with psycopg.connect(world.url) as conn:
        episodes = conn.execute(
            "SELECT patient_id, start_date, setup_at IS NOT NULL FROM monitoring_episodes ORDER BY 1"
        ).fetchall()
    assert [(e[0], e[2]) for e in episodes] == [("p1", True), ("p2", True), ("p3", True)]
    assert episodes[2][1] == T0.date()  # from the oldest reading

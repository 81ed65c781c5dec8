"""A small world for API tests: two organisations, care teams, staff with TOTP, patients, alerts.

Built straight into the database (as the superuser) with the store functions the API uses, so a
test starts signed-out with known accounts. Passwords use cheap argon2 parameters (tests only).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from itertools import count

import httpx
import psycopg
import pyotp
from psycopg.types.json import Jsonb

from clinician_api.auth.passwords import Passwords
from clinician_api.keys import ApiKeys
from store import care_teams, users
from store.alerts import NewAlert, insert_alert
from store.readings import ReadingRow, insert_readings

T0 = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)
PASSWORD = "correct horse battery staple"
SECRET_KEY = "test-secret-key-" + "x" * 32
_SEQ = count(1)


@dataclass
class Account:
    user_id: str
    email: str
    role: str
    org_id: str
    totp: str | None = None  # base32 secret when enrolled
    patient_id: str | None = None


@dataclass
class World:
    url: str
    accounts: dict[str, Account] = field(default_factory=dict)
    teams: dict[str, str] = field(default_factory=dict)
    alerts: dict[str, int] = field(default_factory=dict)

    def __getitem__(self, name: str) -> Account:
        return self.accounts[name]


def passwords() -> Passwords:
    return Passwords(time_cost=1, memory_kib=1024, parallelism=1, concurrency=4)


def _account(conn, keys: ApiKeys, name: str, org: str, role: str, *, totp: bool, patient: str | None = None) -> Account:
    hashed = None if role == "service" else passwords().hash(PASSWORD)
    row = users.create_user(
        conn,
        org_id=org,
        email=f"{name}@{org}.test",
        display_name=name.upper(),
        role=role,
        now=T0,
        patient_id=patient,
        password_hash=hashed,
    )
    secret = None
    if totp:
        secret = pyotp.random_base32()
        users.set_totp_pending(conn, row.user_id, keys.seal(secret.encode(), bound_to=row.user_id), T0)
        users.enable_totp(conn, row.user_id, T0)
    return Account(row.user_id, row.email, role, org, secret, patient)


def build(url: str) -> World:
    """o1: team t1 (patients p1, p2; c1, n1, cc1, a1, svc1), team t2 (p3; c2), patient user pu1 (p1),
    c3 (in no team, no TOTP enrolled yet); o2: team x (q1; x1)."""
    keys = ApiKeys.from_secret(SECRET_KEY)
    w = World(url)
    with psycopg.connect(url, autocommit=True) as conn, conn.transaction():
        for org in ("o1", "o2"):
            conn.execute("INSERT INTO organizations VALUES (%s, %s)", (org, f"Clinic {org}"))
        for pid, org in (("p1", "o1"), ("p2", "o1"), ("p3", "o1"), ("q1", "o2")):
            conn.execute(
                "INSERT INTO patients (patient_id, org_id, display_name, mrn, birth_date) "
                "VALUES (%s, %s, %s, %s, '1950-05-01')",
                (pid, org, f"Name {pid}", f"MRN-{pid}"),
            )
        staff = [
            ("a1", "o1", "admin"),
            ("c1", "o1", "clinician"),
            ("n1", "o1", "nurse"),
            ("cc1", "o1", "care_coordinator"),
            ("c2", "o1", "clinician"),
            ("x1", "o2", "clinician"),
            ("a2", "o2", "admin"),
        ]
        for name, org, role in staff:
            w.accounts[name] = _account(conn, keys, name, org, role, totp=True)
        w.accounts["c3"] = _account(conn, keys, "c3", "o1", "clinician", totp=False)
        w.accounts["pu1"] = _account(conn, keys, "pu1", "o1", "patient", totp=False, patient="p1")
        w.accounts["svc1"] = _account(conn, keys, "svc1", "o1", "service", totp=False)
        layout = {
            "t1": ("o1", ["p1", "p2"], ["c1", "n1", "cc1", "a1", "svc1"]),
            "t2": ("o1", ["p3"], ["c2"]),
            "x": ("o2", ["q1"], ["x1", "a2"]),
        }
        for team_name, (org, pids, members) in layout.items():
            team = care_teams.create_team(conn, org, team_name, T0)
            w.teams[team_name] = team.team_id
            for pid in pids:
                care_teams.add_patient(conn, team, pid, T0)
            for m in members:
                care_teams.add_member(conn, team, w.accounts[m].user_id, T0)
    return w


def add_alert(
    w: World,
    name: str,
    org: str,
    patient: str,
    severity: str,
    *,
    opened: datetime,
    rule: str = "threshold:spo2:low",
    kind: str = "threshold",
    detail: dict | None = None,
) -> int:
    with psycopg.connect(w.url, autocommit=True) as conn, conn.transaction():
        alert_id = insert_alert(
            conn,
            NewAlert(
                org,
                patient,
                rule,
                kind,
                "spo2" if kind == "threshold" else None,
                severity,
                f"{severity} alert",
                [],
                detail or {},
                opened,
                None,
            ),
        )
    w.alerts[name] = alert_id
    return alert_id


def add_readings(url: str, org: str, patient: str, metric: str, points: list[tuple[datetime, float]]) -> None:
    with psycopg.connect(url, autocommit=True) as conn, conn.transaction():
        insert_readings(
            conn, [ReadingRow(t, org, patient, "agent-1", "dev-1", metric, v, next(_SEQ), [], None) for t, v in points]
        )


def totp_code(secret: str, at: datetime, *, offset_steps: int = 0) -> str:
    return pyotp.TOTP(secret).at(at + timedelta(seconds=30 * offset_steps))


async def sign_in(client: httpx.AsyncClient, acct: Account, at: datetime, *, mfa: bool = True) -> str:
    """Password (and TOTP when enrolled); returns the CSRF token."""
    r = await client.post("/api/v1/auth/login", json={"email": acct.email, "password": PASSWORD})
    assert r.status_code == 200, r.text
    csrf = r.json()["csrf_token"]
    client.headers["x-csrf-token"] = csrf
    if mfa and acct.totp:
        r = await client.post("/api/v1/auth/totp/verify", json={"code": totp_code(acct.totp, at)})
        assert r.status_code == 200, r.text
    return csrf


def audit_rows(url: str, *, since: int = 0) -> list[tuple]:
    """(audit_id, action, outcome, actor role, patient_id, object_type, object_id) after ``since``."""
    with psycopg.connect(url) as conn:
        return conn.execute(
            "SELECT audit_id, action, outcome, actor_role, patient_id, object_type, object_id FROM audit_log "
            "WHERE audit_id > %s ORDER BY audit_id",
            (since,),
        ).fetchall()


def audit_head(url: str) -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT coalesce(max(audit_id), 0) FROM audit_log").fetchone()
        return int(row[0])


__all__ = ["Jsonb"]

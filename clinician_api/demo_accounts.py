"""``vigil api demo-accounts --org ORG``: the accounts ``vigil demo`` prints (for a demo only).

A demo clinician and a demo admin in one care team holding every patient of the organisation,
each with a fresh random password (set again on every run, so it can be printed) and an enrolled
TOTP authenticator whose secret is printed (kept across runs, so an authenticator app set up once
keeps working). The second factor is **not** relaxed: the demo signs in exactly as production
does, with codes from an authenticator app or ``oathtool --totp -b SECRET``. Patients without a
monitoring episode get one (from their oldest reading) with its set-up recorded, so the billing
page has evidence to show.

Never run this against a real organisation: it prints passwords.
"""

from __future__ import annotations

import secrets
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta

from cryptography.exceptions import InvalidTag

from clinician_api.auth import totp
from clinician_api.auth.passwords import Passwords
from clinician_api.keys import ApiKeys
from store import care_teams, clinician_views, enrolment, users
from store.connection import Connection
from store.errors import Conflict

__all__ = ["DemoAccount", "ensure_demo_accounts"]

TEAM = "Demo ward"
_ACCOUNTS = (("clinician", "Dr Demo Clinician"), ("admin", "Demo Admin"))


@dataclass(frozen=True, slots=True)
class DemoAccount:
    email: str
    password: str
    role: str
    totp_secret: str
    otpauth_uri: str

    def as_dict(self) -> dict[str, str]:
        return asdict(self)


def _totp_secret(conn: Connection, keys: ApiKeys, user: users.UserRow, now: datetime) -> str:
    if user.totp_secret_sealed is not None:
        try:
            return keys.unseal(user.totp_secret_sealed, bound_to=user.user_id).decode()
        except InvalidTag:
            users.reset_totp(conn, user.user_id, now)  # the API's secret key changed: enrol again
    secret = totp.new_secret()
    users.set_totp_pending(conn, user.user_id, keys.seal(secret.encode(), bound_to=user.user_id), now)
    users.enable_totp(conn, user.user_id, now)
    return secret


def _team(conn: Connection, org_id: str, now: datetime) -> care_teams.TeamRow:
    for team in care_teams.list_teams(conn, org_id):
        if team.name == TEAM:
            return team
    return care_teams.create_team(conn, org_id, TEAM, now)


def _episodes(conn: Connection, org_id: str, patient_ids: list[str], setup_by: str, now: datetime) -> None:
    for pid in patient_ids:
        if enrolment.current_episode(conn, pid, org_id) is not None:
            continue
        first = enrolment.first_reading_at(conn, pid, org_id) or now
        episode = enrolment.open_episode(conn, org_id=org_id, patient_id=pid, start=first.date(), now=now)
        enrolment.record_setup(conn, episode.episode_id, at=first, by=setup_by)


def ensure_demo_accounts(
    conn: Connection, *, org_id: str, keys: ApiKeys, passwords: Passwords, now: datetime, domain: str = "demo.vigil"
) -> list[DemoAccount]:
    out = []
    with conn.transaction():
        team = _team(conn, org_id, now)
        patient_ids = [pid for pid, _ in clinician_views.roster(conn, org_id, after=None, limit=10_000)]
        for pid in patient_ids:
            care_teams.add_patient(conn, team, pid, now)
        for role, name in _ACCOUNTS:
            email = f"{role}@{domain}"
            password = secrets.token_urlsafe(12)
            hashed = passwords.hash(password)
            user = users.get_user_by_email(conn, email)
            if user is None:
                user = users.create_user(
                    conn, org_id=org_id, email=email, display_name=name, role=role, now=now, password_hash=hashed
                )
            elif user.org_id != org_id:
                raise Conflict("user", email, "belongs to another organisation")
            else:
                users.set_password(conn, user.user_id, hashed, now)
            care_teams.add_member(conn, team, user.user_id, now)
            secret = _totp_secret(conn, keys, user, now)
            out.append(DemoAccount(email, password, role, secret, totp.provisioning_uri(secret, email)))
        clinician = users.get_user_by_email(conn, f"clinician@{domain}")
        if clinician is not None:
            _episodes(conn, org_id, patient_ids, clinician.user_id, now - timedelta(seconds=1))
    return out

"""Schemathesis against the API's own OpenAPI schema, over real HTTP to a real `vigil api`: for
generated requests to every operation (signed in as a clinician, and as an admin), no response
is a server error and every response matches its documented schema and content type.

Left out: the operations that end the session the test runs on (logout, session and password
changes, TOTP enrolment) and the endless live stream.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pyotp
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import content_type_conformance, not_a_server_error, response_schema_conformance

from tests.clinician_api.world import PASSWORD, SECRET_KEY, World, add_alert, build
from tests.support import pg
from tests.support.api_process import ApiProcess, api_env, running_api

pytestmark = pytest.mark.slow

_SKIP = r"^/api/v1/auth/(logout|sessions|password|totp)|^/api/v1/alerts/stream"


@dataclass
class Live:
    world: World
    api: ApiProcess


@pytest.fixture(scope="module")
def live(database_url: str) -> Iterator[Live]:
    pg.truncate_all(database_url)
    world = build(database_url)
    add_alert(world, "a", "o1", "p1", "high", opened=datetime.now(UTC) - timedelta(hours=1))
    with running_api(api_env(database_url, SECRET_KEY, VIGIL_API_LOGIN_MAX_FAILURES="100")) as api:
        yield Live(world, api)


def _session(live: Live, name: str) -> requests.Session:
    acct = live.world[name]
    s = requests.Session()
    r = s.post(f"{live.api.base}/api/v1/auth/login", json={"email": acct.email, "password": PASSWORD}, timeout=10)
    r.raise_for_status()
    s.headers["X-CSRF-Token"] = r.json()["csrf_token"]
    assert acct.totp
    v = s.post(f"{live.api.base}/api/v1/auth/totp/verify", json={"code": pyotp.TOTP(acct.totp).now()}, timeout=10)
    v.raise_for_status()
    return s


@pytest.fixture(scope="module")
def sessions(live: Live) -> dict[str, requests.Session]:
    return {"clinician": _session(live, "c1"), "admin": _session(live, "a1")}


CHECKS = [not_a_server_error, response_schema_conformance, content_type_conformance]


def _run_every_operation(live: Live, session: requests.Session) -> tuple[int, list[str]]:
    """Generated cases for every operation of the schema, each checked; (operations, failures).

    Driven through Hypothesis directly (``APIOperation.as_strategy``): schemathesis's lazy pytest
    loader does not run under this pytest version."""
    schema = schemathesis.openapi.from_url(f"{live.api.base}/api/v1/openapi.json").exclude(path_regex=_SKIP)
    failures: list[str] = []
    statuses: dict[int, int] = {}
    operations = 0
    for result in schema.get_all_operations():
        operation = result.ok()
        operations += 1

        @given(case=operation.as_strategy())
        @settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        def run(case: schemathesis.Case) -> None:
            response = case.call_and_validate(base_url=live.api.base, session=session, checks=CHECKS)
            statuses[response.status_code] = statuses.get(response.status_code, 0) + 1

        try:
            run()
        except Exception as exc:  # noqa: BLE001 - every operation's failure is collected and reported
            failures.append(f"{operation.method.upper()} {operation.path}: {str(exc)[:600]}")
    print(operations, sorted(statuses.items()))
    return operations, failures


def test_as_a_clinician(live: Live, sessions: dict[str, requests.Session]) -> None:
    operations, failures = _run_every_operation(live, sessions["clinician"])
    assert operations > 40
    assert failures == [], "\n\n".join(failures)


def test_as_an_admin(live: Live, sessions: dict[str, requests.Session]) -> None:
    operations, failures = _run_every_operation(live, sessions["admin"])
    assert operations > 40
    assert failures == [], "\n\n".join(failures)

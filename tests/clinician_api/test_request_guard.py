"""What no route can store is refused at the door: NUL characters in queries and bodies (which
PostgreSQL text cannot hold: a hostile value was a 500), and oversized bodies."""

from __future__ import annotations

import pytest

from clinician_api.middleware import MAX_BODY_BYTES
from tests.clinician_api.world import T0, audit_head, audit_rows, sign_in

pytestmark = pytest.mark.asyncio
API = "/api/v1"


async def test_nul_in_a_body_is_a_422_problem(client, world) -> None:
    await sign_in(client, world["a1"], T0)
    r = await client.post(
        f"{API}/admin/care-teams", content=b'{"name": "ward\\u0000 7"}', headers={"content-type": "application/json"}
    )
    assert (r.status_code, r.json()["code"]) == (422, "nul_character")
    assert r.headers["content-type"] == "application/problem+json"
    assert r.headers["x-content-type-options"] == "nosniff"  # still behind the edge's headers
    ok = await client.post(f"{API}/admin/care-teams", json={"name": "ward 7"})
    assert ok.status_code == 201


async def test_nul_in_a_query_is_a_400_and_nothing_is_looked_up(client, world) -> None:
    await sign_in(client, world["c1"], T0)
    before = audit_head(world.url)
    r = await client.get(f"{API}/alerts?patient_id=p1%00")
    assert (r.status_code, r.json()["code"]) == (400, "nul_character")
    assert audit_rows(world.url, since=before) == []


async def test_a_nul_in_an_id_is_still_an_audited_404(client, world) -> None:
    await sign_in(client, world["c1"], T0)
    before = audit_head(world.url)
    r = await client.get(f"{API}/patients/p1%00")
    assert r.status_code == 404
    assert [row[2] for row in audit_rows(world.url, since=before)] == ["denied"]


async def test_oversized_bodies_are_refused(client, world) -> None:
    await sign_in(client, world["a1"], T0)
    body = b'{"name": "' + b"x" * MAX_BODY_BYTES + b'"}'
    r = await client.post(f"{API}/admin/care-teams", content=body, headers={"content-type": "application/json"})
    assert (r.status_code, r.json()["code"]) == (413, "too_large")

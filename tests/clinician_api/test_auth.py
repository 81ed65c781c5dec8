"""Sign-in: cookies, the second factor for staff, TOTP enrolment and replay, CSRF, throttling and
lockout, password change and reset by a one-time link, bearer tokens."""

from __future__ import annotations

from datetime import timedelta

import psycopg
import pytest

from store import notification_outbox
from tests.clinician_api.world import PASSWORD, audit_rows, sign_in, totp_code

pytestmark = pytest.mark.asyncio
API = "/api/v1"


async def _login(client, acct, password=PASSWORD):
    return await client.post(f"{API}/auth/login", json={"email": acct.email, "password": password})


async def test_login_sets_an_httponly_samesite_strict_session_cookie(client, world) -> None:
    r = await _login(client, world["pu1"])
    assert r.status_code == 200
    cookies = r.headers.get_list("set-cookie")
    session = next(c for c in cookies if c.startswith("vigil_session="))
    assert "HttpOnly" in session
    assert "SameSite=strict" in session
    assert "Path=/" in session
    csrf = next(c for c in cookies if c.startswith("vigil_csrf="))
    assert "HttpOnly" not in csrf
    assert r.json()["user"]["second_factor"] == "not_required"
    with psycopg.connect(world.url) as conn:  # only the hash of the session secret is stored
        secret = session.split(";")[0].split("=", 1)[1]
        assert (
            conn.execute("SELECT count(*) FROM sessions WHERE secret_sha256 = %s", (secret.encode(),)).fetchone()[0]
            == 0
        )


async def test_secure_cookies_use_the_host_prefix(world, clock) -> None:

    from tests.clinician_api.conftest import serving, settings_for

    async with serving(settings_for(world.url, api_cookie_secure=True), clock, "https://t") as c:
        r = await _login(c, world["pu1"])
    session = next(c for c in r.headers.get_list("set-cookie") if "vigil_session" in c)
    assert session.startswith("__Host-vigil_session=")
    assert "Secure" in session


async def test_staff_need_the_second_factor_before_any_phi(client, world, clock) -> None:
    c1 = world["c1"]
    r = await _login(client, c1)
    client.headers["x-csrf-token"] = r.json()["csrf_token"]
    assert r.json()["user"]["second_factor"] == "required"
    r = await client.get(f"{API}/patients")
    assert (r.status_code, r.json()["code"]) == (403, "second_factor_required")
    assert (await client.get(f"{API}/auth/me")).json()["second_factor"] == "required"
    bad = await client.post(f"{API}/auth/totp/verify", json={"code": "000000"})
    assert (bad.status_code, bad.json()["code"]) == (422, "bad_code")
    ok = await client.post(f"{API}/auth/totp/verify", json={"code": totp_code(c1.totp, clock.now())})
    assert ok.status_code == 200
    assert ok.json()["second_factor"] == "passed"
    assert (await client.get(f"{API}/patients")).status_code == 200


async def test_a_totp_code_is_accepted_once(client, new_client, world, clock) -> None:
    c1 = world["c1"]
    code = totp_code(c1.totp, clock.now())
    await sign_in(client, c1, clock.now(), mfa=False)
    assert (await client.post(f"{API}/auth/totp/verify", json={"code": code})).status_code == 200
    async with new_client() as other:
        await sign_in(other, c1, clock.now(), mfa=False)
        replay = await other.post(f"{API}/auth/totp/verify", json={"code": code})
    assert (replay.status_code, replay.json()["code"]) == (422, "bad_code")


async def test_enrolment_by_qr_code_then_verify(client, world, clock) -> None:
    c3 = world["c3"]  # staff without an authenticator yet
    await sign_in(client, c3, clock.now(), mfa=False)
    assert (await client.get(f"{API}/auth/me")).json()["second_factor"] == "enrol"
    assert (await client.get(f"{API}/patients")).status_code == 403
    r = await client.post(f"{API}/auth/totp/enrol")
    body = r.json()
    assert body["otpauth_uri"].startswith("otpauth://totp/Vigil:")
    assert body["qr_svg"].lstrip().startswith("<svg")
    assert "<script" not in body["qr_svg"]
    img = await client.get(f"{API}/auth/totp/qr.svg")
    assert img.headers["content-type"].startswith("image/svg+xml")
    r = await client.post(f"{API}/auth/totp/verify", json={"code": totp_code(body["secret"], clock.now())})
    assert r.json() == {**r.json(), "totp_enrolled": True, "second_factor": "passed"}


async def test_a_password_alone_cannot_replace_an_enrolled_authenticator(client, world, clock) -> None:
    await sign_in(client, world["c1"], clock.now(), mfa=False)
    r = await client.post(f"{API}/auth/totp/enrol")
    assert (r.status_code, r.json()["code"]) == (409, "totp_enrolled")


async def test_csrf_token_is_required_for_unsafe_methods_with_a_cookie(client, world, clock) -> None:
    csrf = await sign_in(client, world["c1"], clock.now())
    del client.headers["x-csrf-token"]
    r = await client.post(f"{API}/auth/logout")
    assert (r.status_code, r.json()["code"]) == (403, "csrf")
    r = await client.post(f"{API}/auth/logout", headers={"x-csrf-token": csrf[:-2] + "xx"})
    assert (r.status_code, r.json()["code"]) == (403, "csrf")
    assert (await client.get(f"{API}/patients")).status_code == 200  # safe methods need none
    r = await client.post(f"{API}/auth/logout", headers={"x-csrf-token": csrf})
    assert r.status_code == 200
    assert (await client.get(f"{API}/patients")).status_code == 401


async def test_lockout_after_failures_with_a_clear_message_released_after_the_window(
    client, new_client, world, clock
) -> None:
    pu1 = world["pu1"]
    for _ in range(4):
        assert (await _login(client, pu1, "wrong password!!")).status_code == 401
    locked = await _login(client, pu1, "wrong password!!")
    assert locked.status_code == 429
    assert "locked for 15 more minutes" in locked.json()["detail"]
    assert int(locked.headers["retry-after"]) == 901
    still = await _login(client, pu1)  # the right password is refused unchecked while locked
    assert still.status_code == 429
    async with new_client("10.9.9.9") as elsewhere:  # the attacker's address does not lock the user out
        assert (await _login(elsewhere, pu1)).status_code == 200
    clock.advance(15 * 60)
    assert (await _login(client, pu1)).status_code == 200
    outcomes = [(a, o) for _, a, o, *_ in audit_rows(world.url) if a == "auth.login"]
    assert outcomes.count(("auth.login", "failed")) == 5
    assert outcomes.count(("auth.login", "denied")) == 1


async def test_a_lockout_never_outlasts_its_window_however_often_it_is_hit(client, world, clock) -> None:
    pu1 = world["pu1"]
    for _ in range(5):
        await _login(client, pu1, "wrong password!!")
    for _ in range(20):  # attempts during the lock do not extend it
        clock.advance(30)
        assert (await _login(client, pu1, "wrong password!!")).status_code == 429
    clock.advance(15 * 60 - 20 * 30)
    assert (await _login(client, pu1)).status_code == 200


async def test_unknown_accounts_and_wrong_passwords_get_the_same_answer(client, world) -> None:
    a = await client.post(f"{API}/auth/login", json={"email": "nobody@o1.test", "password": PASSWORD})
    b = await _login(client, world["pu1"], "wrong password!!")
    assert (a.status_code, a.json()["detail"]) == (b.status_code, b.json()["detail"]) == (401, b.json()["detail"])


async def test_password_change_revokes_the_other_sessions(client, new_client, world, clock) -> None:
    pu1 = world["pu1"]
    await sign_in(client, pu1, clock.now())
    async with new_client() as other:
        await sign_in(other, pu1, clock.now())
        r = await client.post(
            f"{API}/auth/password", json={"current_password": PASSWORD, "new_password": "a much newer passphrase"}
        )
        assert r.status_code == 200
        assert r.json()["detail"].startswith("1 other")
        assert (await other.get(f"{API}/auth/me")).json()["code"] == "session_revoked"
    assert (await client.get(f"{API}/auth/me")).status_code == 200


def _reset_link(url: str, user_id: str) -> str:
    with psycopg.connect(url) as conn:
        rows = notification_outbox.pending_for(conn, user_id, kind="password_reset")
    assert rows
    assert rows[-1].channel == "email"
    assert rows[-1].secret_params
    assert "token" not in str(rows[-1].params)  # the link is only in the part erased after delivery
    return rows[-1].secret_params["link"].split("#token=", 1)[1]


async def test_password_reset_link_works_once(client, world, clock) -> None:
    pu1 = world["pu1"]
    r = await client.post(f"{API}/auth/password-reset", json={"email": pu1.email})
    assert r.status_code == 202
    token = _reset_link(world.url, pu1.user_id)
    new = {"token": token, "new_password": "brand new passphrase 1"}
    assert (await client.post(f"{API}/auth/password-reset/complete", json=new)).status_code == 200
    again = await client.post(
        f"{API}/auth/password-reset/complete", json={**new, "new_password": "another passphrase 2"}
    )
    assert (again.status_code, again.json()["code"]) == (422, "bad_token")
    assert (await _login(client, pu1, "brand new passphrase 1")).status_code == 200
    assert (await _login(client, pu1)).status_code == 401


async def test_password_reset_link_expires(client, world, clock) -> None:
    pu1 = world["pu1"]
    await client.post(f"{API}/auth/password-reset", json={"email": pu1.email})
    token = _reset_link(world.url, pu1.user_id)
    clock.advance(3601)
    r = await client.post(
        f"{API}/auth/password-reset/complete", json={"token": token, "new_password": "brand new passphrase 1"}
    )
    assert (r.status_code, r.json()["code"]) == (422, "bad_token")


async def test_reset_requests_reveal_nothing_and_are_rate_limited(client, world) -> None:
    unknown = await client.post(f"{API}/auth/password-reset", json={"email": "nobody@o1.test"})
    assert unknown.status_code == 202
    pu1 = world["pu1"]
    for _ in range(6):
        assert (await client.post(f"{API}/auth/password-reset", json={"email": pu1.email})).status_code == 202
    with psycopg.connect(world.url) as conn:
        sent = conn.execute("SELECT count(*) FROM notification_outbox WHERE kind = 'password_reset'").fetchone()[0]
    assert sent == 3  # api_reset_max_per_account


async def test_bearer_tokens_are_scoped_expiring_revocable_and_stored_hashed(client, new_client, world, clock) -> None:
    await sign_in(client, world["a1"], clock.now())
    svc = world["svc1"]
    r = await client.post(
        f"{API}/admin/users/{svc.user_id}/tokens", json={"name": "ehr", "scopes": ["panel.read"], "days": 1}
    )
    assert r.status_code == 201, r.text
    token, token_id = r.json()["token"], r.json()["token_id"]
    async with new_client() as integ:
        integ.headers["authorization"] = f"Bearer {token}"
        assert (await integ.get(f"{API}/patients")).status_code == 200
        assert (await integ.get(f"{API}/alerts")).status_code == 403  # not in its scopes
        assert (await integ.post(f"{API}/auth/logout")).status_code == 200  # no CSRF for bearer
        clock.advance(86_401)
        assert (await integ.get(f"{API}/patients")).json()["code"] == "token_expired"
    with psycopg.connect(world.url) as conn:
        assert (
            conn.execute("SELECT count(*) FROM api_tokens WHERE secret_sha256 = %s", (token.encode(),)).fetchone()[0]
            == 0
        )
    await sign_in(client, world["a1"], clock.now())
    r = await client.post(f"{API}/admin/users/{svc.user_id}/tokens", json={"name": "ehr2", "scopes": ["panel.read"]})
    token2 = r.json()["token"]
    assert (await client.delete(f"{API}/admin/tokens/{r.json()['token_id']}")).status_code == 200
    async with new_client() as integ:
        r = await integ.get(f"{API}/patients", headers={"authorization": f"Bearer {token2}"})
    assert r.json()["code"] == "token_revoked"
    assert token_id


async def test_tokens_are_only_for_service_accounts_and_known_scopes(client, world, clock) -> None:
    await sign_in(client, world["a1"], clock.now())
    r = await client.post(
        f"{API}/admin/users/{world['c1'].user_id}/tokens", json={"name": "x", "scopes": ["panel.read"]}
    )
    assert r.status_code == 409
    r = await client.post(f"{API}/admin/users/{world['svc1'].user_id}/tokens", json={"name": "x", "scopes": ["admin"]})
    assert r.status_code == 422


async def test_service_accounts_cannot_sign_in_with_a_password(client, world) -> None:
    assert (await _login(client, world["svc1"])).status_code == 401


async def test_idle_sessions_end_and_activity_keeps_them(client, world, clock) -> None:
    await sign_in(client, world["c1"], clock.now())
    clock.advance(800)
    assert (await client.get(f"{API}/patients")).status_code == 200
    clock.advance(800)  # 1,600 s after sign-in, 800 s after the last use
    assert (await client.get(f"{API}/patients")).status_code == 200
    clock.advance(900)
    r = await client.get(f"{API}/patients")
    assert (r.status_code, r.json()["code"]) == (401, "session_idle")


async def test_sessions_end_at_their_absolute_age_whatever_the_activity(client, world, clock) -> None:
    await sign_in(client, world["c1"], clock.now())
    for _ in range(int(43_200 / 600) - 1):
        clock.advance(600)
        assert (await client.get(f"{API}/auth/me")).status_code == 200
    clock.advance(600)
    r = await client.get(f"{API}/auth/me")
    assert (r.status_code, r.json()["code"]) == (401, "session_expired")


async def test_sessions_can_be_listed_and_revoked_by_their_owner_and_by_an_admin(
    client, new_client, world, clock
) -> None:
    n1 = world["n1"]
    await sign_in(client, n1, clock.now())
    async with new_client() as phone, new_client() as admin:
        await sign_in(phone, n1, clock.now(), mfa=False)
        sessions = (await client.get(f"{API}/auth/sessions")).json()
        assert len(sessions) == 2
        assert sum(s["current"] for s in sessions) == 1
        other = next(s["session_id"] for s in sessions if not s["current"])
        assert (await client.delete(f"{API}/auth/sessions/{other}")).status_code == 200
        assert (await phone.get(f"{API}/auth/me")).json()["code"] == "session_revoked"
        await sign_in(admin, world["a1"], clock.now())
        assert (await admin.post(f"{API}/admin/users/{n1.user_id}/sessions/revoke")).json() == {"count": 1}
    assert (await client.get(f"{API}/auth/me")).json()["code"] == "session_revoked"


async def test_a_second_factor_code_guessing_attack_locks_like_passwords(client, world, clock) -> None:
    await sign_in(client, world["c1"], clock.now(), mfa=False)
    codes = [f"{n:06d}" for n in range(100000, 100006)]
    statuses = [(await client.post(f"{API}/auth/totp/verify", json={"code": c})).status_code for c in codes]
    assert statuses[:4] == [422] * 4
    assert statuses[4:] == [429, 429]
    assert (await client.get(f"{API}/patients")).status_code == 403
    clock.advance(timedelta(minutes=15).total_seconds())

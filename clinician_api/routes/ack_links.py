"""``/ack/{alert_id}/{token}``: acknowledge an alert from a notification's link, in two taps.

``GET`` shows, to the signed-in recipient, a page with one button; ``POST`` (that button: a form
carrying the CSRF token, or ``X-CSRF-Token``) acknowledges the alert through ``alerts.service``
with ``via='link'`` (the alert's timeline says who and how), which stops its escalation, and
spends the link. Signed out (or before the second factor), ``GET`` answers a page that sends the
user to sign in and back (``/login?next=...``).

The link's token (consult.notify.links) is checked in this order, so that a refusal says nothing
to someone who should not learn anything:

1. its signature; that it names the alert in the path and the signed-in user; that its row exists
   and agrees; that the alert is in the caller's panel — otherwise a 404 whose body is the same
   for every reason, and one ``denied`` audit row;
2. then that it has not expired and has not been used — a 410 and one ``failed`` audit row.

An alert no longer open (acknowledged by someone else meanwhile, resolved) answers 409 saying
when it was acknowledged; the link is not spent (it did nothing).
"""

from __future__ import annotations

import functools
import html
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Final
from urllib.parse import parse_qs, quote

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse

from alerts import service
from clinician_api import audit
from clinician_api.access import patient_basis
from clinician_api.audit import recorded
from clinician_api.auth.roles import Permission, allowed
from clinician_api.context import Db, Info, RequestInfo, Services, Svc
from clinician_api.errors import ApiError, Conflict, Forbidden, Unauthenticated
from clinician_api.problems import translate
from clinician_api.security import CSRF_HEADER, Principal, authenticate
from consult.notify.errors import AckLinkInvalid
from consult.notify.links import AckClaim, AckLinkSigner
from store import ack_links
from store import alerts as alert_store
from store import audit as audit_store
from store.ack_links import AckLinkRow
from store.alerts import AlertRow
from store.connection import Connection

__all__ = ["router"]

router = APIRouter(include_in_schema=False)

_ACTION: Final = "alert.acknowledge"
_FORM_MAX: Final = 4096


class LinkGone(ApiError):
    status = 410
    title = "Gone"
    reason = "link_gone"


@dataclass(frozen=True, slots=True)
class _Checked:
    claim: AckClaim
    link: AckLinkRow
    alert: AlertRow
    basis: str


class _Refused(Exception):
    def __init__(self, reason: str, patient_id: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.patient_id = patient_id


@functools.lru_cache(maxsize=4)
def _signer(secret: str) -> AckLinkSigner:
    return AckLinkSigner.from_secret(secret)


def signer_of(svc: Services) -> AckLinkSigner:
    key = svc.settings.api_secret_key
    if key is None:  # pragma: no cover - create_app refuses to start without one
        raise RuntimeError("no api_secret_key")
    return _signer(key.get_secret_value())


def _page(title: str, body: str, status: int) -> HTMLResponse:
    doc = (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{html.escape(title)} - Vigil</title></head>"
        f"<body><main><h1>{html.escape(title)}</h1>{body}</main></body></html>"
    )
    return HTMLResponse(doc, status_code=status)


_NOT_FOUND: Final = "<p>This link is not valid for you. Open Vigil to see your alerts.</p>"


def _caller(request: Request, conn: Connection, svc: Services) -> Principal | None:
    try:
        who = authenticate(request, conn, svc)
    except Unauthenticated:
        return None
    return who if who.second_factor_ok else None


def _sign_in_page(request: Request) -> HTMLResponse:
    target = quote(request.url.path, safe="/")
    return _page(
        "Sign in to acknowledge",
        f'<p>Sign in to Vigil, then this page will ask you to confirm.</p><p><a href="/login?next={target}">'
        "Sign in</a></p>",
        401,
    )


def _check(conn: Connection, svc: Services, who: Principal, raw_alert: str, token: str, now: datetime) -> _Checked:
    """The link's claim, row and alert, or :class:`_Refused` (404) / :class:`LinkGone` (410)."""
    try:
        claim = signer_of(svc).verify(token)
    except AckLinkInvalid as exc:
        raise _Refused(f"link_{exc.why}") from exc
    if not (raw_alert.isascii() and raw_alert.isdigit() and len(raw_alert) <= 18):
        raise _Refused("other_alert")
    path_alert = alert_store.get_alert(conn, int(raw_alert))
    path_patient = path_alert.patient_id if path_alert is not None and path_alert.org_id == who.org_id else None
    if path_alert is None or claim.alert_id != path_alert.alert_id:
        raise _Refused("other_alert", path_patient)
    if claim.user_id != who.user_id:
        raise _Refused("other_recipient", path_patient)
    link = ack_links.lock_link(conn, claim.link_id)
    if link is None or link.alert_id != claim.alert_id or link.recipient_user_id != claim.user_id:
        raise _Refused("unknown_link", path_patient)
    basis = patient_basis(conn, who, path_alert.patient_id, now) if path_alert.org_id == who.org_id else None
    if basis is None:
        raise _Refused("not_visible", path_patient)
    if claim.expired(now) or link.expires_at <= now:
        raise LinkGone("this link has expired: open the alert in Vigil", code="link_expired")
    if link.used_at is not None:
        raise LinkGone("this link was used already", code="link_used")
    return _Checked(claim, link, path_alert, basis)


def _refuse(conn: Connection, who: Principal, info: RequestInfo, svc: Services, raw: str, r: _Refused) -> HTMLResponse:
    audit.deny(
        conn,
        who,
        info,
        svc.clock,
        action=_ACTION,
        object_type="alert",
        object_id=raw[:200],
        patient_id=r.patient_id,
        reason=r.reason,
    )
    return _page("Link not valid", _NOT_FOUND, 404)


def _gone(conn: Connection, who: Principal, info: RequestInfo, svc: Services, raw: str, exc: LinkGone) -> HTMLResponse:
    with conn.transaction():
        audit_store.append(
            conn,
            audit.entry(
                who,
                info,
                svc.clock,
                action=_ACTION,
                object_type="alert",
                outcome="failed",
                object_id=raw[:200],
                reason=exc.code,
            ),
        )
    return _page("Link no longer valid", f"<p>{html.escape(exc.detail)}.</p>", exc.status)


def _staff(conn: Connection, who: Principal | None, info: RequestInfo, svc: Services) -> HTMLResponse | None:
    """None when ``who`` may acknowledge alerts; else the page to answer."""
    if who is None:
        return None
    if not allowed(who.role, Permission.ALERTS_ACT, who.scopes):
        audit.deny(conn, who, info, svc.clock, action=_ACTION, object_type="route", object_id=info.path, reason="role")
        return _page("Not allowed", "<p>Your role does not acknowledge alerts.</p>", 403)
    return None


@router.get("/ack/{alert_id}/{token}", response_class=HTMLResponse)
def confirm(request: Request, alert_id: str, token: str, conn: Db, svc: Svc, info: Info) -> HTMLResponse:
    """The confirmation page (the first tap)."""
    who = _caller(request, conn, svc)
    if who is None:
        return _sign_in_page(request)
    refusal = _staff(conn, who, info, svc)
    if refusal is not None:
        return refusal
    try:
        with conn.transaction():
            checked = _check(conn, svc, who, alert_id, token, svc.clock.now())
    except _Refused as r:
        return _refuse(conn, who, info, svc, alert_id, r)
    except LinkGone as exc:
        return _gone(conn, who, info, svc, alert_id, exc)
    a = checked.alert
    csrf = svc.keys.csrf_token(who.session_secret) if who.session_secret else ""
    state = html.escape(a.state)
    body = (
        f"<p>Alert {a.alert_id} ({html.escape(a.severity)}) is {state}.</p>"
        f'<form method="post" action="{html.escape(request.url.path)}">'
        f'<input type="hidden" name="csrf_token" value="{html.escape(csrf)}">'
        '<button type="submit">Acknowledge</button></form>'
        f'<p><a href="/alerts/{a.alert_id}">Open the alert</a></p>'
    )
    with recorded(
        conn,
        who,
        info,
        svc.clock,
        action="alert.read",
        object_type="alert",
        object_id=str(a.alert_id),
        patient_id=a.patient_id,
        basis=checked.basis,
    ):
        pass
    return _page("Acknowledge this alert?", body, 200)


async def _form_csrf(request: Request) -> str | None:
    """The ``csrf_token`` field of a small urlencoded form (the confirmation page's button)."""
    if request.headers.get("content-type", "").split(";")[0].strip() != "application/x-www-form-urlencoded":
        return None
    body = await request.body()
    if len(body) > _FORM_MAX:
        return None
    values = parse_qs(body.decode("utf-8", errors="replace")).get("csrf_token")
    return values[0] if values else None


def _with_csrf(request: Request, csrf: str | None) -> Request:
    """The request, with the form's CSRF token as the header :func:`authenticate` checks."""
    if csrf is None or request.headers.get(CSRF_HEADER) is not None:
        return request
    headers = [*request.scope["headers"], (CSRF_HEADER.encode("latin-1"), csrf.encode("latin-1", errors="replace"))]
    return Request({**request.scope, "headers": headers})


@router.post("/ack/{alert_id}/{token}", response_class=HTMLResponse)
def acknowledge(
    request: Request,
    alert_id: str,
    token: str,
    conn: Db,
    svc: Svc,
    info: Info,
    form_csrf: Annotated[str | None, Depends(_form_csrf)],
) -> HTMLResponse:
    """Acknowledge (the second tap): stops the escalation, spends the link."""
    try:
        who = authenticate(_with_csrf(request, form_csrf), conn, svc)
    except Unauthenticated:
        return _sign_in_page(request)
    except Forbidden:
        return _page("Not allowed", "<p>This form has expired: open the link again.</p>", 403)
    if not who.second_factor_ok:
        return _sign_in_page(request)
    refusal = _staff(conn, who, info, svc)
    if refusal is not None:
        return refusal
    now = svc.clock.now()
    try:
        with conn.transaction():
            checked = _check(conn, svc, who, alert_id, token, now)
    except _Refused as r:
        return _refuse(conn, who, info, svc, alert_id, r)
    except LinkGone as exc:
        return _gone(conn, who, info, svc, alert_id, exc)
    a = checked.alert
    try:
        with recorded(
            conn,
            who,
            info,
            svc.clock,
            action=_ACTION,
            object_type="alert",
            object_id=str(a.alert_id),
            patient_id=a.patient_id,
            basis=checked.basis,
        ):
            _spend(conn, checked, who, now)
    except _NotOpen as exc:
        return _not_open(exc.alert)
    except ApiError as exc:
        mapped = translate(exc)
        status = mapped.status if mapped is not None else 409
        return _page("Not acknowledged", f"<p>{html.escape(exc.detail)}.</p>", status)
    return _page(
        "Acknowledged",
        f"<p>Alert {a.alert_id} is acknowledged: its escalation has stopped.</p>"
        f'<p><a href="/alerts/{a.alert_id}">Open the alert</a></p>',
        200,
    )


def _spend(conn: Connection, checked: _Checked, who: Principal, now: datetime) -> None:
    """Acknowledge and spend the link (in the caller's transaction; a concurrent use loses here)."""
    link = ack_links.lock_link(conn, checked.link.link_id)
    if link is None or link.used_at is not None:
        raise LinkGone("this link was used already", code="link_used")
    current = alert_store.get_alert(conn, checked.alert.alert_id, for_update=True)
    if current is None or current.state != "open":
        raise _NotOpen(current)
    service.acknowledge(conn, current.alert_id, by=who.user_id, now=now, via="link")
    ack_links.use_link(conn, link.link_id, now, outcome="acknowledged")


class _NotOpen(Conflict):
    def __init__(self, alert: AlertRow | None) -> None:
        super().__init__("the alert is no longer open", code="alert_not_open")
        self.alert = alert


def _not_open(a: AlertRow | None) -> HTMLResponse:
    if a is not None and a.state == "acknowledged" and a.acknowledged_at is not None:
        when = a.acknowledged_at.strftime("%Y-%m-%d %H:%M UTC")
        text = f"<p>Alert {a.alert_id} was already acknowledged at {when}.</p>"
    else:
        text = "<p>This alert is no longer open.</p>"
    return _page("Already handled", text, 409)

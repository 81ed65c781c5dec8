"""The portal's pages: ``/portal`` sends a signed-in patient to their own pages,
``/portal/{patient_id}/...``.

Every page goes through :func:`clinician_api.access.guard` with the ``portal`` resolver: only
the patient themselves passes (not their care team, not break-glass: the portal is the patient's
own view); any other id, or any other caller, gets the same 404 as a missing patient and one
``denied`` audit row. A page that passes reads inside :func:`clinician_api.audit.recorded` and
leaves exactly one ``success`` row. Pages are rendered on the server; the only script is the
dashboard's ``app.js`` (sign-out), so the portal works with script off and under the CSP.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Final
from urllib.parse import parse_qs
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse

from clinician_api import audit
from clinician_api.access import Denied, Resolved, guard, register
from clinician_api.audit import recorded
from clinician_api.auth.roles import Permission
from clinician_api.context import Db, Info, Services, Svc
from clinician_api.errors import Conflict, Invalid, NotFound
from clinician_api.portal import care, views
from clinician_api.portal.wording import day_words
from clinician_api.security import CSRF_HEADER, Principal, require
from clinician_api.web.render import Pages
from consult import scheduling
from consult.errors import ConsultStateError, SlotUnavailable
from rpm_core.errors import InvalidIdentifier
from rpm_core.ids import patient_id as check_patient_id
from store import care_teams, enrolment, users
from store import consults as consult_store
from store.connection import Connection

__all__ = ["router"]

router = APIRouter(include_in_schema=False)


@register("portal")
def _own_patient(conn: Connection, who: Principal, raw: str, now: datetime) -> Resolved | Denied:
    """The caller's own patient record, and only for a patient user."""
    try:
        pid = check_patient_id(raw)
    except InvalidIdentifier:
        return Denied()
    org = care_teams.patient_org(conn, pid)
    if org is None:
        return Denied()
    if not who.is_patient or who.patient_id != pid or who.org_id != org:
        return Denied(pid)
    return Resolved("patient", pid, org, pid, "self")


Signed = Annotated[Principal, Depends(require(None))]
Own = Annotated[Resolved, Depends(guard("portal", "patient_id", Permission.PANEL_READ))]
_BOOKER: Final = guard("portal", "patient_id", Permission.CONSULTS_BOOK)
OwnBooker = Annotated[Resolved, Depends(_BOOKER)]
_FORM_MAX: Final = 4096


def _pages(request: Request) -> Pages:
    pages: Pages = request.app.state.pages
    return pages


def _render(request: Request, conn: Connection, target: Resolved, page: str, extra: dict[str, Any]) -> HTMLResponse:
    user = users.get_user(conn, target.caller.user_id)
    context = {
        "page": page,
        "pid": target.object_id,
        "name": user.display_name if user else "",
        **extra,
    }
    return _pages(request).render(f"portal/{page}.html", context)


@router.get("/portal")
def portal(who: Signed) -> RedirectResponse:
    """A patient's own home; anyone else has no portal."""
    if not who.is_patient or who.patient_id is None:
        raise NotFound()
    return RedirectResponse(f"/portal/{who.patient_id}", status_code=303)


def _week(conn: Connection, svc: Services, target: Resolved, now: datetime) -> tuple[str, list[views.TopicView]]:
    """The organisation's time zone and the patient's week of readings in plain words."""
    zone = enrolment.org_time_zone(conn, target.org_id)
    rules = svc.settings.alerts_rules
    topics = views.readings_view(
        conn, flavor=svc.flavor, rules=rules, org_id=target.org_id, patient_id=target.object_id, now=now, zone=zone
    )
    return zone, topics


@router.get("/portal/{patient_id}", response_class=HTMLResponse)
def home(request: Request, target: Own, conn: Db, svc: Svc, info: Info) -> HTMLResponse:
    now = svc.clock.now()
    with _reading(conn, target, svc, info, "portal.home.read", "portal_home"):
        zone, topics = _week(conn, svc, target, now)
        devices = views.devices_view(conn, org_id=target.org_id, patient_id=target.object_id, now=now)
        threads = care.message_threads(
            conn, org_id=target.org_id, patient_id=target.object_id, user_id=target.caller.user_id
        )
        consult = care.next_consult(
            conn, org_id=target.org_id, patient_id=target.object_id, user_id=target.caller.user_id, now=now
        )
        consent = views.consent_view(conn, org_id=target.org_id, patient_id=target.object_id, zone=zone)
    return _render(
        request,
        conn,
        target,
        "home",
        {
            "topics": topics,
            "devices": devices,
            "attention": [d for d in devices if not d.ok],
            "unread": sum(t.unread for t in threads),
            "consult": _consult(consult, zone, now),
            "consent": consent.current,
        },
    )


@router.get("/portal/{patient_id}/readings", response_class=HTMLResponse)
def readings(request: Request, target: Own, conn: Db, svc: Svc, info: Info) -> HTMLResponse:
    now = svc.clock.now()
    with _reading(conn, target, svc, info, "portal.readings.read", "vitals"):
        _zone, topics = _week(conn, svc, target, now)
    return _render(request, conn, target, "readings", {"topics": topics})


@router.get("/portal/{patient_id}/devices", response_class=HTMLResponse)
def devices(request: Request, target: Own, conn: Db, svc: Svc, info: Info) -> HTMLResponse:
    now = svc.clock.now()
    with _reading(conn, target, svc, info, "portal.devices.read", "devices"):
        cards = views.devices_view(conn, org_id=target.org_id, patient_id=target.object_id, now=now)
    return _render(request, conn, target, "devices", {"devices": cards})


@router.get("/portal/{patient_id}/consent", response_class=HTMLResponse)
def consent(request: Request, target: Own, conn: Db, svc: Svc, info: Info) -> HTMLResponse:
    with _reading(conn, target, svc, info, "portal.consent.read", "consent"):
        zone = enrolment.org_time_zone(conn, target.org_id)
        view = views.consent_view(conn, org_id=target.org_id, patient_id=target.object_id, zone=zone)
    return _render(request, conn, target, "consent", {"consent": view})


@router.get("/portal/{patient_id}/messages", response_class=HTMLResponse)
def messages(request: Request, target: Own, conn: Db, svc: Svc, info: Info) -> HTMLResponse:
    now = svc.clock.now()
    with _reading(conn, target, svc, info, "portal.messages.read", "message_threads"):
        zone = enrolment.org_time_zone(conn, target.org_id)
        threads = care.message_threads(
            conn, org_id=target.org_id, patient_id=target.object_id, user_id=target.caller.user_id
        )
    shown = [{"card": t, "when": day_words(t.last_at, zone, with_time=True)} for t in threads]
    return _render(request, conn, target, "messages", {"threads": shown, "now": now})


@router.get("/portal/{patient_id}/consults", response_class=HTMLResponse)
def consults(request: Request, target: Own, conn: Db, svc: Svc, info: Info) -> HTMLResponse:
    now = svc.clock.now()
    with _reading(conn, target, svc, info, "portal.consults.read", "consults"):
        zone = enrolment.org_time_zone(conn, target.org_id)
        consult = care.next_consult(
            conn, org_id=target.org_id, patient_id=target.object_id, user_id=target.caller.user_id, now=now
        )
        waiting = care.waiting_for_a_time(conn, org_id=target.org_id, patient_id=target.object_id)
    return _render(request, conn, target, "consults", {"consult": _consult(consult, zone, now), "waiting": waiting})


def _own_consult(conn: Connection, target: Resolved, svc: Svc, info: Info, raw: str, action: str) -> int:
    """The consult id when it is this patient's; else one ``denied`` row and the same 404 as a
    missing consult (another patient's id reveals nothing)."""
    row = None
    if raw.isascii() and raw.isdigit() and len(raw) <= 18:
        row = consult_store.get_consult_request(conn, int(raw))
    if row is None or row.org_id != target.org_id or row.patient_id != target.object_id:
        audit.deny(
            conn,
            target.caller,
            info,
            svc.clock,
            action=action,
            object_type="consult",
            object_id=raw[:200],
            patient_id=row.patient_id if row is not None else None,
        )
        raise NotFound()
    return row.request_id


_BOOK_READ: Final = "portal.consult_slots.read"
_BOOK: Final = "portal.consult.book"
_WHY: Final = {
    "taken": "Sorry, that time has just been taken by someone else. Please choose another time.",
}


@router.get("/portal/{patient_id}/consults/{consult_id}/book", response_class=HTMLResponse, response_model=None)
def book_page(
    request: Request, consult_id: str, target: OwnBooker, conn: Db, svc: Svc, info: Info
) -> HTMLResponse | RedirectResponse:
    """The open times the patient can choose from for a consult request with no booked time yet.
    A consult already booked (or started, or canceled) sends them back to their appointments."""
    now = svc.clock.now()
    rid = _own_consult(conn, target, svc, info, consult_id, _BOOK_READ)
    with recorded(
        conn,
        target.caller,
        info,
        svc.clock,
        action=_BOOK_READ,
        object_type="consult",
        object_id=str(rid),
        patient_id=target.patient_id,
        basis=target.basis,
    ):
        zone = enrolment.org_time_zone(conn, target.org_id)
        if not care.bookable(conn, org_id=target.org_id, patient_id=target.object_id, request_id=rid):
            return RedirectResponse(f"/portal/{target.object_id}/consults", status_code=303)
        slots = care.open_slots(conn, org_id=target.org_id, now=now)
    who = target.caller
    shown = [
        {
            "slot_id": s.slot_id,
            "when": day_words(s.starts_at, zone, with_time=True),
            "until": f"{s.ends_at.astimezone(ZoneInfo(zone)):%H:%M}",
            "minutes": max(1, round((s.ends_at - s.starts_at).total_seconds() / 60)),
            "with_whom": s.with_whom,
        }
        for s in slots
    ]
    return _render(
        request,
        conn,
        target,
        "book",
        {
            "consult_id": rid,
            "slots": shown,
            "days": care.SLOT_DAYS,
            "csrf": svc.keys.csrf_token(who.session_secret) if who.session_secret else "",
            "message": _WHY.get(request.query_params.get("why", "")),
        },
    )


async def _form(request: Request) -> dict[str, str]:
    """A small urlencoded form's fields (first value of each); empty for anything else."""
    if request.headers.get("content-type", "").split(";")[0].strip() != "application/x-www-form-urlencoded":
        return {}
    body = await request.body()
    if len(body) > _FORM_MAX:
        return {}
    return {k: v[0] for k, v in parse_qs(body.decode("utf-8", errors="replace")).items() if v}


def _with_csrf(request: Request, csrf: str | None) -> Request:
    """The request, with the form's CSRF token as the header the session check reads (a script's
    own header, if any, wins)."""
    if csrf is None or request.headers.get(CSRF_HEADER) is not None:
        return request
    headers = [*request.scope["headers"], (CSRF_HEADER.encode("latin-1"), csrf.encode("latin-1", errors="replace"))]
    return Request({**request.scope, "headers": headers})


@router.post("/portal/{patient_id}/consults/{consult_id}/book", response_class=RedirectResponse)
def book(
    request: Request,
    consult_id: str,
    conn: Db,
    svc: Svc,
    info: Info,
    form: Annotated[dict[str, str], Depends(_form)],
) -> RedirectResponse:
    """Book the chosen slot (a plain form: its ``csrf_token`` field stands for the header) through
    the same :func:`consult.scheduling.book` the API's ``POST /consults/{id}/book`` uses, then back
    to the appointments page, which shows the booked time. A slot taken meanwhile comes back to
    the choice with a message; one ``portal.consult.book`` audit row either way."""
    checked = _with_csrf(request, form.get("csrf_token"))
    who = require(Permission.CONSULTS_BOOK)(checked, conn, svc, info)
    target = _BOOKER(checked, conn, svc, info, who)
    rid = _own_consult(conn, target, svc, info, consult_id, _BOOK)
    raw = form.get("slot_id", "")
    if not (raw.isascii() and raw.isdigit()) or not 0 < len(raw) <= 18:
        raise Invalid("choose one of the times offered", field="slot_id", code="slot_id")
    slot_id = int(raw)
    home = f"/portal/{target.object_id}/consults"
    try:
        with recorded(
            conn,
            who,
            info,
            svc.clock,
            action=_BOOK,
            object_type="consult",
            object_id=str(rid),
            patient_id=target.patient_id,
            basis=target.basis,
        ) as rec:
            rec.reason = f"slot {slot_id}"
            try:
                scheduling.book(
                    conn,
                    org_id=target.org_id,
                    request_id=rid,
                    slot_id=slot_id,
                    patient_user_id=users.patient_user_id(conn, target.org_id, target.object_id),
                    by=who.user_id,
                    at=svc.clock.now(),
                )
            except SlotUnavailable as exc:
                raise Conflict(f"the slot cannot be booked: {exc.why}", code="slot_unavailable") from exc
            except ConsultStateError as exc:
                raise Conflict(f"the consult is {exc.status}: cannot {exc.wanted}", code="consult_state") from exc
    except Conflict as exc:
        if exc.code == "slot_unavailable":
            return RedirectResponse(f"{home}/{rid}/book?why=taken", status_code=303)
        return RedirectResponse(home, status_code=303)  # booked already (a second tap), or canceled
    return RedirectResponse(home, status_code=303)


def _reading(conn: Connection, target: Resolved, svc: Svc, info: Info, action: str, object_type: str) -> Any:
    return recorded(
        conn,
        target.caller,
        info,
        svc.clock,
        action=action,
        object_type=object_type,
        object_id=target.object_id,
        patient_id=target.patient_id,
        basis=target.basis,
    )


def _consult(card: care.ConsultCard | None, zone: str, now: datetime) -> dict[str, Any] | None:
    if card is None:
        return None
    opens = card.join_opens_at
    return {
        "card": card,
        "when": day_words(card.starts_at, zone, with_time=True) if card.starts_at else "as soon as a clinician is free",
        "can_join": card.join_url is not None and (opens is None or opens <= now),
        "opens": day_words(opens, zone, with_time=True) if opens else None,
    }

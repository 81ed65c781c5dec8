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
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse

from clinician_api.access import Denied, Resolved, guard, register
from clinician_api.audit import recorded
from clinician_api.auth.roles import Permission
from clinician_api.context import Db, Info, Svc
from clinician_api.errors import NotFound
from clinician_api.portal import care, views
from clinician_api.portal.wording import day_words
from clinician_api.security import Principal, require
from clinician_api.web.render import Pages
from rpm_core.errors import InvalidIdentifier
from rpm_core.ids import patient_id as check_patient_id
from store import care_teams, enrolment, users
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


@router.get("/portal/{patient_id}", response_class=HTMLResponse)
def home(request: Request, target: Own, conn: Db, svc: Svc, info: Info) -> HTMLResponse:
    now = svc.clock.now()
    with _reading(conn, target, svc, info, "portal.home.read", "portal_home"):
        zone = enrolment.org_time_zone(conn, target.org_id)
        topics = views.readings_view(
            conn,
            flavor=svc.flavor,
            rules=svc.settings.alerts_rules,
            org_id=target.org_id,
            patient_id=target.object_id,
            now=now,
            zone=zone,
        )
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
        zone = enrolment.org_time_zone(conn, target.org_id)
        topics = views.readings_view(
            conn,
            flavor=svc.flavor,
            rules=svc.settings.alerts_rules,
            org_id=target.org_id,
            patient_id=target.object_id,
            now=now,
            zone=zone,
        )
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
    return _render(request, conn, target, "consults", {"consult": _consult(consult, zone, now)})


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

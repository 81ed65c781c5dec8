"""The dashboard's pages and the HTML fragments htmx swaps in, served by the same app.

Every page and fragment calls the API route function that serves the same data, so it is
authorised by the same guard and leaves the same single audit row; then it renders a template.
Writes never go through here: the pages' scripts call the JSON API (with the CSRF header), and a
fragment is fetched again afterwards. A signed-out visitor is redirected to ``/login`` (htmx gets
``HX-Redirect``); other errors are small HTML pages (a 404 looks the same whether the object is
missing or outside the caller's panel).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse

from clinician_api.access import Resolved, guard
from clinician_api.auth.roles import Permission, allowed
from clinician_api.context import Db, Info, Svc
from clinician_api.errors import ApiError
from clinician_api.routes import alerts as alert_routes
from clinician_api.routes import billing as billing_routes
from clinician_api.routes import enrolment as enrolment_routes
from clinician_api.routes import fleet as fleet_routes
from clinician_api.routes import history as history_routes
from clinician_api.routes import patients as patient_routes
from clinician_api.routes import sparklines as sparkline_routes
from clinician_api.routes import time as time_routes
from clinician_api.security import Principal, authenticate, require
from clinician_api.web.render import Pages
from rpm_core.metrics import CATALOGUE
from store import users
from store.connection import Connection

__all__ = ["router"]

router = APIRouter(include_in_schema=False)

Signed = Annotated[Principal, Depends(require(None))]
PanelReader = Annotated[Principal, Depends(require(Permission.PANEL_READ))]
AlertReader = Annotated[Principal, Depends(require(Permission.ALERTS_READ))]
Admin = Annotated[Principal, Depends(require(Permission.ADMIN))]
BillingReader = Annotated[Principal, Depends(require(Permission.BILLING_READ))]
PatientPage = Annotated[Resolved, Depends(guard("patient", "patient_id", Permission.PANEL_READ))]
HistoryPart = Annotated[Resolved, Depends(guard("patient", "patient_id", Permission.ALERTS_READ))]
TimePart = Annotated[Resolved, Depends(guard("patient", "patient_id", Permission.TIME_READ))]
QueueState = Literal["open", "acknowledged"]
# The order of the charts on a patient's page.
_CHART_ORDER = (
    "spo2",
    "heart_rate",
    "bp_systolic",
    "bp_diastolic",
    "respiratory_rate",
    "body_temperature",
    "body_weight",
    "glucose",
)


def _pages(request: Request) -> Pages:
    pages: Pages = request.app.state.pages
    return pages


def _me(conn: Connection, who: Principal) -> dict[str, Any]:
    user = users.get_user(conn, who.user_id)
    return {
        "user_id": who.user_id,
        "name": user.display_name if user else who.user_id,
        "role": who.role,
        "can": {p.value.replace(".", "_"): allowed(who.role, p, who.scopes) for p in Permission},
    }


@router.get("/")
def home(request: Request, conn: Db, svc: Svc) -> RedirectResponse:
    """A patient's home is their portal; everyone else's the panel (which signs them in first)."""
    try:
        who = authenticate(request, conn, svc, touch=False)
    except ApiError:
        who = None
    return RedirectResponse("/portal" if who is not None and who.is_patient else "/panel", status_code=303)


@router.get("/login", response_class=HTMLResponse)
def login(request: Request, conn: Db, svc: Svc) -> HTMLResponse:
    """The sign-in page; a session that still needs its second factor starts at the code."""
    step = ""
    try:
        who = authenticate(request, conn, svc, touch=False)
    except ApiError:
        who = None
    if who is not None and not who.second_factor_ok:
        step = "required" if who.totp_enabled else "enrol"
    return _pages(request).render("login.html", {"me": None, "page": "login", "step": step})


@router.get("/panel", response_class=HTMLResponse)
def panel(
    request: Request,
    who: PanelReader,
    conn: Db,
    svc: Svc,
    info: Info,
    cursor: Annotated[str | None, Query(max_length=1000)] = None,
) -> HTMLResponse:
    page = patient_routes.panel_of(who, conn, svc, info, limit=50, cursor=cursor)
    return _pages(request).render(
        "panel.html", {"me": _me(conn, who), "page": "panel", "panel": page, "now": svc.clock.now()}
    )


@router.get("/ui/panel/sparklines", response_class=HTMLResponse)
def panel_sparklines(
    request: Request,
    who: PanelReader,
    conn: Db,
    svc: Svc,
    info: Info,
    patient: Annotated[list[str], Query(min_length=1, max_length=sparkline_routes.MAX_PATIENTS)],
) -> HTMLResponse:
    """The sparklines of a panel page's patients, which the page loads after its table: each
    patient's drawings replace the placeholder of its row (``spark-<row>``, out of band)."""
    sparks = sparkline_routes.sparklines_of(who, conn, svc, info, patient)
    return _pages(request).render("_panel_sparklines.html", {"sparks": sparks})


@router.get("/patients/{patient_id}", response_class=HTMLResponse)
def patient(request: Request, target: PatientPage, conn: Db, svc: Svc, info: Info) -> HTMLResponse:
    detail = patient_routes.patient_detail(target, conn, svc, info)
    have = {v.metric for v in detail.latest}
    metrics = [m for m in _CHART_ORDER if m in have] + sorted(have - set(_CHART_ORDER))
    return _pages(request).render(
        "patient.html",
        {
            "me": _me(conn, target.caller),
            "page": "patient",
            "patient": detail,
            "metrics": metrics or ["spo2", "heart_rate"],
            "catalogue": CATALOGUE,
            "now": svc.clock.now(),
        },
    )


def _queue(who: Principal, conn: Db, svc: Svc, info: Info, state: list[QueueState] | None) -> Any:
    return alert_routes.queue(
        who,
        conn,
        svc,
        info,
        state=list(state or ["open"]),
        severity=None,
        patient_id=None,
        assigned_to_me=False,
        include_snoozed=True,
        limit=100,
        cursor=None,
    )


@router.get("/alerts", response_class=HTMLResponse)
def alert_queue(
    request: Request,
    who: AlertReader,
    conn: Db,
    svc: Svc,
    info: Info,
    state: Annotated[list[QueueState] | None, Query()] = None,
) -> HTMLResponse:
    page = _queue(who, conn, svc, info, state)
    states = list(state or ["open"])
    return _pages(request).render(
        "alerts.html",
        {"me": _me(conn, who), "page": "alerts", "queue": page, "states": states, "now": svc.clock.now()},
    )


@router.get("/ui/alerts/rows", response_class=HTMLResponse)
def alert_rows(
    request: Request,
    who: AlertReader,
    conn: Db,
    svc: Svc,
    info: Info,
    state: Annotated[list[QueueState] | None, Query()] = None,
) -> HTMLResponse:
    page = _queue(who, conn, svc, info, state)
    can_act = allowed(who.role, Permission.ALERTS_ACT, who.scopes)
    return _pages(request).render("_queue_rows.html", {"queue": page, "can_act": can_act, "now": svc.clock.now()})


@router.get("/ui/patients/{patient_id}/alerts", response_class=HTMLResponse)
def alert_history(
    request: Request,
    target: HistoryPart,
    conn: Db,
    svc: Svc,
    info: Info,
    cursor: Annotated[str | None, Query(max_length=1000)] = None,
) -> HTMLResponse:
    page = history_routes.patient_alert_history(target, conn, svc, info, state=None, limit=10, cursor=cursor)
    return _pages(request).render(
        "_alert_history.html", {"history": page, "patient_id": target.object_id, "now": svc.clock.now()}
    )


@router.get("/ui/patients/{patient_id}/settings", response_class=HTMLResponse)
def settings_form(request: Request, target: PatientPage, conn: Db, svc: Svc, info: Info) -> HTMLResponse:
    settings = enrolment_routes.get_settings(target, conn, svc, info)
    can_edit = allowed(target.caller.role, Permission.SETTINGS_WRITE, target.caller.scopes)
    return _pages(request).render("_settings_form.html", {"s": settings, "can_edit": can_edit, "catalogue": CATALOGUE})


@router.get("/ui/patients/{patient_id}/time", response_class=HTMLResponse)
def time_part(request: Request, target: TimePart, conn: Db, svc: Svc, info: Info) -> HTMLResponse:
    listing = time_routes.list_time(target, conn, svc, info, month=None, limit=20, cursor=None)
    can_write = allowed(target.caller.role, Permission.TIME_WRITE, target.caller.scopes)
    return _pages(request).render(
        "_time.html",
        {"t": listing, "patient_id": target.object_id, "can_write": can_write, "me_id": target.caller.user_id},
    )


@router.get("/admin/policy", response_class=HTMLResponse)
def policy(request: Request, who: Admin, conn: Db) -> HTMLResponse:
    current = history_routes.get_policy(who, conn)
    return _pages(request).render("policy.html", {"me": _me(conn, who), "page": "policy", "policy": current})


@router.get("/admin/fleet", response_class=HTMLResponse)
def fleet_page(
    request: Request,
    who: Admin,
    conn: Db,
    svc: Svc,
    info: Info,
    cursor: Annotated[str | None, Query(max_length=1000)] = None,
) -> HTMLResponse:
    page = fleet_routes.list_agents(who, conn, svc, info, limit=100, cursor=cursor)
    return _pages(request).render(
        "fleet.html", {"me": _me(conn, who), "page": "fleet", "fleet": page, "now": svc.clock.now()}
    )


@router.get("/billing", response_class=HTMLResponse)
def billing(
    request: Request,
    who: BillingReader,
    conn: Db,
    svc: Svc,
    info: Info,
    month: Annotated[str | None, Query(pattern=r"^2\d{3}-(0[1-9]|1[0-2])$")] = None,
) -> HTMLResponse:
    chosen = month or svc.clock.now().strftime("%Y-%m")
    report = billing_routes.billing_report(who, conn, svc, info, month=chosen, format="json")
    return _pages(request).render(
        "billing.html", {"me": _me(conn, who), "page": "billing", "report": report, "month": chosen}
    )

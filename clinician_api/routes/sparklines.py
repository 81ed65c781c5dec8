"""``/api/v1/sparklines``: the 7-day sparklines of several patients at once, the panel page's.

The panel list (``GET /patients``) answers what sorting and the table need; the sparklines, most
of a panel's bytes, come from here for the patients of one page, so the dashboard loads them after
the table. One call reads one set of patients and writes one audit row (``sparklines.read``, the
patients as its subjects). Every patient named must be visible to the caller (a patient user: only
themselves); otherwise the call is the same 404 as any id that names nothing, with one ``denied``
audit row listing the real patients that were refused. The answer carries a strong ETag
(``If-None-Match`` gives a 304, still audited, as charts do).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Annotated, Any, Final

from fastapi import APIRouter, Depends, Header, Query, Response
from pydantic import BaseModel, Field

from clinician_api import audit
from clinician_api.audit import recorded
from clinician_api.auth.roles import Permission
from clinician_api.context import Db, Info, Svc
from clinician_api.errors import NotFound
from clinician_api.etag import etag_for, not_modified
from clinician_api.routes.patient_data import floor_to
from clinician_api.security import Principal, require
from rpm_core.errors import InvalidIdentifier
from rpm_core.ids import patient_id as check_patient_id
from store import care_teams
from store import clinician_views as views

__all__ = ["PatientSparklines", "Sparkline", "Sparklines", "router", "sparklines_of"]

router = APIRouter(prefix="/sparklines", tags=["patients"])

PanelReader = Annotated[Principal, Depends(require(Permission.PANEL_READ))]
MAX_PATIENTS: Final = 200
WINDOW: Final = timedelta(days=7)
SLOT: Final = timedelta(hours=6)


class Sparkline(BaseModel):
    metric: str
    values: list[float | None] = Field(
        description="The mean of each slot (null: no reading in it), rounded to 2 decimals; slot i starts at "
        "start + i * slot_s."
    )


class PatientSparklines(BaseModel):
    patient_id: str
    sparklines: list[Sparkline] = Field(description="One per metric with readings in the 7 days.")


class Sparklines(BaseModel):
    start: datetime = Field(description="Start of the first slot: the 7 days end now, cut in 6-hour slots.")
    slot_s: int = Field(description="Length of a slot in seconds.")
    items: list[PatientSparklines] = Field(description="One per patient asked for, in the order asked.")


@router.get(
    "",
    response_model=Sparklines,
    responses={304: {"description": "Not modified (If-None-Match matched the ETag)"}},
    summary="7-day sparklines of some of my patients (a panel page's), ETag",
)
def sparklines(
    who: PanelReader,
    conn: Db,
    svc: Svc,
    info: Info,
    patient: Annotated[list[str], Query(min_length=1, max_length=MAX_PATIENTS)],
    if_none_match: Annotated[str | None, Header()] = None,
) -> Response:
    body = sparklines_of(who, conn, svc, info, patient).model_dump_json().encode()
    etag = etag_for(body)
    headers = {"ETag": etag, "Cache-Control": "private, no-store"}
    if not_modified(if_none_match, etag):
        return Response(status_code=304, headers=headers)
    return Response(body, media_type="application/json", headers=headers)


def sparklines_of(who: Principal, conn: Db, svc: Svc, info: Info, patient_ids: Sequence[str]) -> Sparklines:
    """The sparklines of ``patient_ids`` (each once, in the order given), authorised and audited."""
    ids = list(dict.fromkeys(patient_ids))
    now = svc.clock.now()
    basis = _authorise(who, conn, svc, info, ids, now)
    with recorded(conn, who, info, svc.clock, action="sparklines.read", object_type="sparklines", basis=basis) as rec:
        rec.subjects = ids
        points = views.sparklines(
            conn, org_id=who.org_id, patient_ids=ids, now=now, days=WINDOW.days, bucket_h=SLOT.seconds // 3600
        )
    start = floor_to(now - WINDOW, SLOT)
    slots = (floor_to(now, SLOT) - start) // SLOT + 1
    by_patient: dict[str, list[dict[str, Any]]] = {}
    for (pid, metric), pts in sorted(points.items()):
        values: list[float | None] = [None] * slots
        for t, v in pts:
            values[(t - start) // SLOT] = round(v, 2)
        by_patient.setdefault(pid, []).append({"metric": metric, "values": values})
    # One validation of plain data (thousands of values) instead of a model built per sparkline.
    return Sparklines.model_validate(
        {
            "start": start,
            "slot_s": int(SLOT.total_seconds()),
            "items": [{"patient_id": p, "sparklines": by_patient.get(p, [])} for p in ids],
        }
    )


def _authorise(who: Principal, conn: Db, svc: Svc, info: Info, ids: list[str], now: datetime) -> str:
    """The audit basis when ``who`` may see every one of ``ids``; otherwise one denied audit row
    (the refused ids that name real patients as its subjects) and :class:`NotFound`."""
    valid = [p for p in ids if _valid(p)]
    existing = _existing(conn, who, valid, now)  # patient -> (organisation, basis or None)
    missing = [p for p in ids if p not in existing]
    hidden: list[str] = []  # real patients the caller may not see
    bases: set[str] = set()
    for p, (_, basis) in existing.items():
        if who.is_patient:
            basis = "self" if p == who.patient_id else None
        if basis is None:
            hidden.append(p)
        else:
            bases.add(basis)
    if missing or hidden:
        audit.deny(
            conn,
            who,
            info,
            svc.clock,
            action="sparklines.read",
            object_type="sparklines",
            object_id=(hidden + missing)[0],
            patient_id=hidden[0] if hidden else None,
            subjects=hidden,
        )
        raise NotFound()
    if "break_glass" in bases:
        return "break_glass"
    return "self" if who.is_patient else "panel"


def _valid(raw: str) -> bool:
    try:
        check_patient_id(raw)
    except InvalidIdentifier:
        return False
    return True


def _existing(conn: Db, who: Principal, ids: list[str], now: datetime) -> dict[str, tuple[str, str | None]]:
    if not ids:
        return {}
    found = care_teams.patients_access(conn, user_id=who.user_id, org_id=who.org_id, patient_ids=ids, now=now)
    return {p: (org, basis) for p, (org, basis) in found.items()}

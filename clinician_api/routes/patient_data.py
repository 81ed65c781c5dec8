"""Building blocks of the patient routes: latest vitals, devices, a panel page, break-glass grants."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any, Final

from pydantic import BaseModel

from clinician_api.context import Services
from clinician_api.security import Principal
from rpm_core.metrics import CATALOGUE
from store import care_teams, summaries, users
from store import clinician_views as views
from store.care_teams import GrantRow
from store.connection import Connection
from store.devices import devices_of
from store.notification_outbox import NewNotification, enqueue
from store.readings import BUCKET_ORIGIN

__all__ = [
    "DeviceOut",
    "VitalOut",
    "breakglass",
    "device_dicts",
    "devices",
    "floor_to",
    "latest_vital_dicts",
    "latest_vitals",
    "panel_page",
]

_UNITS: Final = {name: m.unit for name, m in CATALOGUE.items()}


class VitalOut(BaseModel):
    metric: str
    value: float
    unit: str
    time: datetime
    device_id: str


class DeviceOut(BaseModel):
    kind: str  # 'agent' (the home hub) or 'device' (a BLE instrument)
    id: str
    last_seen_at: datetime | None
    battery_pct: int | None


def floor_to(t: datetime, step: timedelta) -> datetime:
    """``t`` rounded down to a bucket boundary of the store's rollups (aligned to 2000-01-01Z)."""
    return BUCKET_ORIGIN + ((t - BUCKET_ORIGIN) // step) * step


# The panel answers up to ``api_page_max`` patients with about seven values and four devices each:
# it builds plain dicts (the store's rows are already the right types) and serialises them once.
# A pydantic model per value cost more than the queries (1,400 ``VitalOut`` in a panel of 200). The
# dicts have exactly the fields, in the order, of :class:`VitalOut` and :class:`DeviceOut`; the
# page models still document the answer and validate it in the tests and for the HTML pages.
VitalDict = dict[str, Any]
DeviceDict = dict[str, Any]


def latest_vital_dicts(conn: Connection, org_id: str, patient_ids: Sequence[str]) -> dict[str, list[VitalDict]]:
    """The newest value of each metric per patient, from the summaries, brought up to every
    reading committed before this call first (``store.summaries.advance``; the sparklines and
    adherence read after it in the same request see the same readings)."""
    out: dict[str, list[VitalDict]] = {}
    if not patient_ids:
        return out
    summaries.advance(conn)
    for v in summaries.latest(conn, org=org_id, patients=patient_ids):
        out.setdefault(v.patient_id, []).append(
            {"metric": v.metric, "value": v.value, "unit": _UNITS[v.metric], "time": v.time, "device_id": v.device_id}
        )
    return out


def latest_vitals(conn: Connection, org_id: str, patient_ids: Sequence[str]) -> dict[str, list[VitalOut]]:
    return {
        p: [VitalOut.model_validate(v) for v in vs] for p, vs in latest_vital_dicts(conn, org_id, patient_ids).items()
    }


def device_dicts(conn: Connection, patient_ids: Sequence[str]) -> dict[str, list[DeviceDict]]:
    out: dict[str, list[DeviceDict]] = {}
    if not patient_ids:
        return out
    for d in devices_of(conn, patient_ids):
        out.setdefault(d.patient_id, []).append(
            {"kind": d.kind, "id": d.id, "last_seen_at": d.last_seen, "battery_pct": d.battery_pct}
        )
    return out


def devices(conn: Connection, patient_ids: Sequence[str]) -> dict[str, list[DeviceOut]]:
    return {p: [DeviceOut.model_validate(d) for d in ds] for p, ds in device_dicts(conn, patient_ids).items()}


def panel_page(
    conn: Connection, svc: Services, who: Principal, *, limit: int, cursor: str | None
) -> tuple[list[views.PanelRow], bool]:
    after = None
    if cursor is not None:
        k1, k2, k3, pid = svc.cursors.decode("panel", who.user_id, cursor)
        after = (int(k1), int(k2), int(k3), str(pid))
    rows = views.panel(
        conn,
        org_id=who.org_id,
        user_id=None if who.is_patient else who.user_id,
        patient_id=who.patient_id if who.is_patient else None,
        after=after,
        limit=limit + 1,
    )
    return rows[:limit], len(rows) > limit


def breakglass(conn: Connection, svc: Services, who: Principal, patient_id: str, reason: str, minutes: int) -> GrantRow:
    """Grant, and flag it to every admin of the organisation (in-app and email; ids only, no PHI)."""
    now = svc.clock.now()
    grant = care_teams.create_grant(
        conn,
        org_id=who.org_id,
        user_id=who.user_id,
        patient_id=patient_id,
        reason=reason,
        now=now,
        expires_at=now + timedelta(minutes=minutes),
    )
    for admin in users.admins_of(conn, who.org_id):
        for channel in ("in_app", "email"):
            enqueue(
                conn,
                NewNotification(
                    org_id=who.org_id,
                    channel=channel,
                    recipient_user_id=admin,
                    kind="break_glass_review",
                    idempotency_key=f"break_glass:{grant.grant_id}:{admin}:{channel}",
                    params={"grant_id": grant.grant_id},
                ),
                now,
            )
    return grant

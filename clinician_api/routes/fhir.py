"""FHIR R4 read and search (``/fhir/r4``), built with :mod:`clinician_api.fhir` from the store.

- ``GET /fhir/r4/Patient/{id}``, ``GET /fhir/r4/Device/{id}`` (``phd-…`` a measuring device,
  ``phg-…`` an edge agent as the gateway);
- ``GET /fhir/r4/Observation?patient=&code=&date=&_count=&_cursor=``: a ``searchset`` Bundle, in
  (measured time, agent, sequence) order, paged by an opaque cursor bound to the query and the
  caller; ``patient`` is required (no search across patients);
- ``GET /fhir/r4/Patient/{id}/$everything``: the patient's export as NDJSON, streamed from a
  server-side cursor.

Access is the API's: the same sessions and tokens, the same object guard (a patient outside the
caller's panel is a 404 and a denied audit row), one audit row per call. Bodies are
``application/fhir+json``; errors stay problem+json like the rest of the API.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, time, timedelta
from typing import Annotated, Any, Final

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse, StreamingResponse

from clinician_api.access import Denied, Resolved, guard, patient_basis, register, resolve
from clinician_api.audit import recorded
from clinician_api.auth.roles import Permission
from clinician_api.context import Db, Info, Services, Svc
from clinician_api.errors import Invalid
from clinician_api.fhir import (
    CURSOR_PARAM,
    NDJSON_MEDIA_TYPE,
    DeviceRecord,
    FhirError,
    InvalidFhirId,
    PatientRecord,
    ReadingRecord,
    device_resource,
    everything_ndjson,
    gateway_device_resource,
    metrics_for_code,
    page_observations,
    parse_device_fhir_id,
    parse_patient_fhir_id,
    patient_resource,
    searchset,
)
from clinician_api.security import Principal
from rpm_core.metrics import CATALOGUE
from store import clinician_views as views
from store import devices as device_store
from store import report_views
from store.connection import Connection
from store.devices import DeviceFacts
from store.report_views import ReadingFacts

__all__ = ["FHIR_JSON", "FHIR_PREFIX", "router"]

log = logging.getLogger(__name__)

FHIR_PREFIX: Final = "/fhir/r4"
FHIR_JSON: Final = "application/fhir+json"
router = APIRouter(prefix=FHIR_PREFIX, tags=["fhir"])
_FHIR_RESPONSE: Final[dict[int | str, dict[str, Any]]] = {
    200: {"content": {FHIR_JSON: {"schema": {"type": "object"}}}, "description": "A FHIR resource"}
}


def _patient_by_fhir_id(conn: Connection, who: Principal, raw: str, now: datetime) -> Resolved | Denied:
    try:
        pid = parse_patient_fhir_id(raw.removeprefix("Patient/"))
    except InvalidFhirId:
        return Denied()
    if pid is None:
        return Denied()
    return resolve("patient", conn, who, pid, now)


register("fhir_patient")(_patient_by_fhir_id)


@register("fhir_device")
def _device(conn: Connection, who: Principal, raw: str, now: datetime) -> Resolved | Denied:
    try:
        kind, ident = parse_device_fhir_id(raw)
    except InvalidFhirId:
        return Denied()
    if ident is None:
        return Denied()
    if kind == "phd":
        facts = device_store.device_facts(conn, ident)
        org, patient = (None, None) if facts is None else (facts.org_id, facts.patient_id)
    else:
        found = report_views.agent_patient(conn, ident)
        org, patient = (None, None) if found is None else found
        facts = None
    if org is None:
        return Denied()
    if org != who.org_id or patient is None:
        return Denied(patient)
    basis = patient_basis(conn, who, patient, now)
    if basis is None:
        return Denied(patient)
    return Resolved("device", raw, org, patient, basis, (kind, ident, facts))


FhirPatient = Annotated[Resolved, Depends(guard("fhir_patient", "patient_id", Permission.PANEL_READ))]
FhirDevice = Annotated[Resolved, Depends(guard("fhir_device", "device_id", Permission.PANEL_READ))]
SearchPatient = Annotated[Resolved, Depends(guard("fhir_patient", "patient", Permission.PANEL_READ, source="query"))]


def _fhir(resource: dict[str, Any]) -> JSONResponse:
    return JSONResponse(resource, media_type=FHIR_JSON)


def _patient_record(conn: Connection, target: Resolved) -> PatientRecord:
    row = views.patient(conn, target.object_id, target.org_id)
    if row is None:  # pragma: no cover - resolved a moment ago
        raise Invalid("the patient disappeared", code="gone")
    return PatientRecord(row.patient_id, row.org_id, row.display_name, row.birth_date, row.mrn)


def _device_record(d: DeviceFacts) -> DeviceRecord:
    return DeviceRecord(
        d.device_id, d.org_id, d.agent_id, d.patient_id, d.profile, d.name, d.manufacturer, d.model, d.serial,
        d.firmware, d.battery_pct, d.last_seen_at,
    )  # fmt: skip


def _reading_records(rows: Iterable[ReadingFacts]) -> Iterator[ReadingRecord]:
    """Records of stored readings; a row the mapping cannot take is skipped and logged by its key."""
    for r in rows:
        try:
            yield ReadingRecord(
                r.patient_id, r.org_id, r.agent_id, r.device_id, r.seq, r.metric, r.value, CATALOGUE[r.metric].unit,
                r.measured_at, r.received_at, r.device_time, tuple(r.flags),
            )  # fmt: skip
        except (FhirError, KeyError):
            log.warning("reading %s/%d not exported: not mappable", r.agent_id, r.seq)


def _base(svc: Services) -> str:
    return svc.settings.api_public_url.rstrip("/") + FHIR_PREFIX


@router.get("/Patient/{patient_id}", responses=_FHIR_RESPONSE, response_class=JSONResponse)
def read_patient(target: FhirPatient, conn: Db, svc: Svc, info: Info) -> JSONResponse:
    with recorded(
        conn,
        target.caller,
        info,
        svc.clock,
        action="fhir.patient_read",
        object_type="patient",
        object_id=target.object_id,
        patient_id=target.patient_id,
        basis=target.basis,
    ):
        resource = patient_resource(_patient_record(conn, target))
    return _fhir(resource)


@router.get("/Device/{device_id}", responses=_FHIR_RESPONSE, response_class=JSONResponse)
def read_device(target: FhirDevice, conn: Db, svc: Svc, info: Info) -> JSONResponse:
    kind, ident, facts = target.row
    with recorded(
        conn,
        target.caller,
        info,
        svc.clock,
        action="fhir.device_read",
        object_type="device",
        object_id=ident,
        patient_id=target.patient_id,
        basis=target.basis,
    ):
        resource = (
            device_resource(_device_record(facts)) if kind == "phd" else gateway_device_resource(ident, target.org_id)
        )
    return _fhir(resource)


def _bounds(text: str) -> tuple[datetime, datetime]:
    """The instants ``[lo, hi)`` a FHIR date (a whole UTC day) or dateTime (one instant) stands for."""
    if len(text) == 10:
        lo = datetime.combine(datetime.fromisoformat(text).date(), time(), tzinfo=UTC)
        return lo, lo + timedelta(days=1)
    lo = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if lo.tzinfo is None:
        raise ValueError("a dateTime needs a zone")
    return lo, lo + timedelta(microseconds=1)


def _date_range(values: list[str]) -> tuple[datetime | None, datetime | None]:
    """``date`` search parameters (prefixes eq, ge, gt, le, lt; a date or a dateTime with a zone)
    as one half-open range."""
    start: datetime | None = None
    end: datetime | None = None
    for raw in values:
        prefix, text = (raw[:2], raw[2:]) if raw[:2] in ("eq", "ge", "gt", "le", "lt") else ("eq", raw)
        try:
            lo, hi = _bounds(text)
        except ValueError as exc:
            raise Invalid("date is [eq|ge|gt|le|lt]YYYY-MM-DD or a dateTime with a zone", field="date") from exc
        lower = {"eq": lo, "ge": lo, "gt": hi}.get(prefix)
        upper = {"eq": hi, "le": hi, "lt": lo}.get(prefix)
        if lower is not None:
            start = lower if start is None else max(start, lower)
        if upper is not None:
            end = upper if end is None else min(end, upper)
    return start, end


def _metrics(codes: list[str]) -> list[str] | None:
    if not codes:
        return None
    found: set[str] = set()
    for token in (t for value in codes for t in value.split(",") if t):
        system, _, code = token.rpartition("|")
        found |= metrics_for_code(system or None, code)
    return sorted(found)


@router.get(
    "/Observation",
    responses={200: {"content": {FHIR_JSON: {"schema": {"type": "object"}}}, "description": "A searchset Bundle"}},
    response_class=JSONResponse,
    summary="Search a patient's Observations (searchset Bundle, cursor pages)",
)
def search_observations(
    request: Request,
    target: SearchPatient,
    conn: Db,
    svc: Svc,
    info: Info,
    patient: Annotated[str, Query(max_length=200)],
    code: Annotated[list[str] | None, Query(max_length=500)] = None,
    date: Annotated[list[str] | None, Query(max_length=40)] = None,
    count: Annotated[int, Query(alias="_count", ge=1, le=1000)] = 100,
    cursor: Annotated[str | None, Query(alias=CURSOR_PARAM, max_length=1000)] = None,
) -> JSONResponse:
    who = target.caller
    metrics = _metrics(code or [])
    start, end = _date_range(date or [])
    query_key = hashlib.sha256(repr((target.object_id, sorted(code or []), sorted(date or []))).encode()).hexdigest()
    kind = f"fhir-obs:{query_key[:32]}"
    after = None
    if cursor is not None:
        t, agent, seq = svc.cursors.decode(kind, who.user_id, cursor)
        after = (datetime.fromisoformat(str(t)), str(agent), int(seq))
    with recorded(
        conn,
        who,
        info,
        svc.clock,
        action="fhir.observation_search",
        object_type="observation",
        object_id=target.object_id,
        patient_id=target.patient_id,
        basis=target.basis,
    ):
        rows = (
            []
            if metrics == []
            else report_views.readings_page(
                conn,
                org_id=target.org_id,
                patient_id=target.object_id,
                metrics=metrics,
                start=start,
                end=end,
                after=after,
                limit=3 * count + 3,  # a BP panel holds at most 3 readings; +1 group to find the next key
            )
        )
        profiles = {d.device_id: d.profile for d in device_store.patient_devices(conn, target.org_id, target.object_id)}
        page = page_observations(
            _reading_records(rows), count, device_profiles={k: v for k, v in profiles.items() if v is not None}
        )
    nxt = None
    if page.next_key is not None:
        key = page.next_key
        nxt = svc.cursors.encode(kind, who.user_id, [key.measured_at.isoformat(), key.agent_id, key.seq])
    bundle = searchset(
        page.resources,
        base_url=_base(svc),
        resource_type="Observation",
        params=list(request.query_params.multi_items()),
        cursor=cursor,
        next_cursor=nxt,
        timestamp=svc.clock.now(),
    )
    return _fhir(bundle)


@router.get(
    "/Patient/{patient_id}/$everything",
    responses={200: {"content": {NDJSON_MEDIA_TYPE: {"schema": {"type": "string"}}}, "description": "NDJSON"}},
    response_class=StreamingResponse,
    summary="The patient's resources as NDJSON (streamed)",
)
def export_everything(target: FhirPatient, conn: Db, svc: Svc, info: Info) -> StreamingResponse:
    with recorded(
        conn,
        target.caller,
        info,
        svc.clock,
        action="fhir.export",
        object_type="patient",
        object_id=target.object_id,
        patient_id=target.patient_id,
        basis=target.basis,
    ):
        record = _patient_record(conn, target)
        devices = [_device_record(d) for d in device_store.patient_devices(conn, target.org_id, target.object_id)]

    def lines() -> Iterator[str]:
        with svc.pool.connection() as own, own.transaction():
            rows = report_views.stream_readings(own, org_id=target.org_id, patient_id=target.object_id)
            yield from everything_ndjson(record, devices, _reading_records(rows))

    filename = f"vigil-{target.object_id[:60]}.ndjson"
    return StreamingResponse(
        lines(),
        media_type=NDJSON_MEDIA_TYPE,
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )

"""Consult notes and follow-up tasks (the rules are :mod:`consult.notes`).

``/api/v1/patients/{id}/notes`` starts and lists a patient's notes; ``/api/v1/notes/{id}`` reads,
saves the draft, signs, amends and exports one (FHIR R4 ``Encounter`` + ``DocumentReference`` in
a ``collection`` Bundle); ``/api/v1/patients/{id}/tasks`` creates and lists follow-up tasks and
``/api/v1/tasks`` is the care team's list (open tasks of my panel, soonest due first). A note or a
task is visible when its patient is (the panel, or break-glass): anyone else gets the 404 of a
missing one and a denied audit row. Every call writes one audit row.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, ConfigDict, Field

from clinician_api.access import Denied, Resolved, guard, patient_basis, register
from clinician_api.audit import recorded
from clinician_api.auth.roles import Permission
from clinician_api.context import Db, Info, Svc
from clinician_api.errors import Conflict, Invalid
from clinician_api.fhir.ids import patient_fhir_id
from clinician_api.security import Principal, require
from consult import notes as rules
from store import care_tasks, care_teams
from store import consult_notes as note_store
from store.care_tasks import TaskRow
from store.connection import Connection
from store.consult_notes import NoteRow, VersionRow

__all__ = ["router"]

router = APIRouter(tags=["notes"])


@register("note")
def _note(conn: Connection, who: Principal, raw: str, now: datetime) -> Resolved | Denied:
    row = note_store.get_note(conn, raw)
    if row is None:
        return Denied()
    basis = patient_basis(conn, who, row.patient_id, now) if row.org_id == who.org_id and not who.is_patient else None
    if basis is None:
        return Denied(row.patient_id)
    return Resolved("note", row.note_id, row.org_id, row.patient_id, basis, row)


@register("task")
def _task(conn: Connection, who: Principal, raw: str, now: datetime) -> Resolved | Denied:
    row = care_tasks.get_task(conn, raw)
    if row is None:
        return Denied()
    basis = patient_basis(conn, who, row.patient_id, now) if row.org_id == who.org_id and not who.is_patient else None
    if basis is None:
        return Denied(row.patient_id)
    return Resolved("task", row.task_id, row.org_id, row.patient_id, basis, row)


NoteReader = Annotated[Resolved, Depends(guard("note", "note_id", Permission.NOTES_READ))]
NoteWriter = Annotated[Resolved, Depends(guard("note", "note_id", Permission.NOTES_WRITE))]
PatientNotes = Annotated[Resolved, Depends(guard("patient", "patient_id", Permission.NOTES_READ))]
PatientNoteWriter = Annotated[Resolved, Depends(guard("patient", "patient_id", Permission.NOTES_WRITE))]
PatientTasks = Annotated[Resolved, Depends(guard("patient", "patient_id", Permission.TASKS))]
TaskCloser = Annotated[Resolved, Depends(guard("task", "task_id", Permission.TASKS))]
TaskReader = Annotated[Principal, Depends(require(Permission.TASKS))]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class NewNoteIn(Strict):
    request_id: int | None = Field(default=None, ge=1, description="The consult request the note follows.")


class DraftIn(Strict):
    subjective: str | None = Field(default=None, max_length=rules.MAX_SECTION)
    objective: str | None = Field(default=None, max_length=rules.MAX_SECTION)
    assessment: str | None = Field(default=None, max_length=rules.MAX_SECTION)
    plan: str | None = Field(default=None, max_length=rules.MAX_SECTION)


class AmendIn(Strict):
    reason: str = Field(min_length=1, max_length=1000)


class TaskIn(Strict):
    kind: Literal["remeasure", "change_thresholds", "schedule_consult", "other"]
    due_in_hours: float = Field(gt=0, le=24 * 90)
    detail: str = Field(default="", max_length=2000)
    metrics: list[str] = Field(default_factory=list, max_length=20)
    note_id: str | None = Field(default=None, max_length=36)


class CloseIn(Strict):
    status: Literal["done", "canceled"] = "done"
    note: str | None = Field(default=None, max_length=2000)


class VersionOut(BaseModel):
    version: int
    amends_version: int | None
    amend_reason: str | None
    subjective: str
    objective: str
    vitals: list[dict[str, Any]]
    assessment: str
    plan: str
    written_at: datetime
    written_by: str
    signed_at: datetime | None
    signed_by: str | None


class NoteOut(BaseModel):
    note_id: str
    patient_id: str
    request_id: int | None
    created_at: datetime
    created_by: str
    status: Literal["draft", "signed", "amending"] = Field(
        description="draft: never signed; signed: read-only; amending: signed, with an amendment drafted."
    )
    current: VersionOut = Field(description="The open draft, or else the latest signed version.")
    versions: list[VersionOut]


class NoteSummary(BaseModel):
    note_id: str
    request_id: int | None
    created_at: datetime
    created_by: str


class TaskOut(BaseModel):
    task_id: str
    patient_id: str
    note_id: str | None
    kind: str
    detail: str
    metrics: list[str]
    due_at: datetime
    status: str
    created_at: datetime
    created_by: str
    closed_at: datetime | None
    closed_by: str | None
    close_note: str | None


@contextmanager
def _rules() -> Iterator[None]:
    try:
        yield
    except rules.NoteRefused as exc:
        if exc.conflict:
            raise Conflict(exc.detail, code=exc.code) from exc
        raise Invalid(exc.detail, field=exc.field, code=exc.code) from exc


def _version(v: VersionRow) -> VersionOut:
    return VersionOut(
        version=v.version,
        amends_version=v.amends_version,
        amend_reason=v.amend_reason,
        subjective=v.subjective,
        objective=v.objective,
        vitals=v.vitals,
        assessment=v.assessment,
        plan=v.plan,
        written_at=v.written_at,
        written_by=v.written_by,
        signed_at=v.signed_at,
        signed_by=v.signed_by,
    )


def _note_out(conn: Connection, note: NoteRow) -> NoteOut:
    every = note_store.versions(conn, note.note_id)
    draft = next((v for v in every if v.signed_at is None), None)
    signed = any(v.signed_at is not None for v in every)
    status: Literal["draft", "signed", "amending"] = "signed" if draft is None else "amending" if signed else "draft"
    return NoteOut(
        note_id=note.note_id,
        patient_id=note.patient_id,
        request_id=note.request_id,
        created_at=note.created_at,
        created_by=note.created_by,
        status=status,
        current=_version(draft or every[-1]),
        versions=[_version(v) for v in every],
    )


def _task_out(t: TaskRow) -> TaskOut:
    return TaskOut(
        task_id=t.task_id,
        patient_id=t.patient_id,
        note_id=t.note_id,
        kind=t.kind,
        detail=t.detail,
        metrics=t.metrics,
        due_at=t.due_at,
        status=t.status,
        created_at=t.created_at,
        created_by=t.created_by,
        closed_at=t.closed_at,
        closed_by=t.closed_by,
        close_note=t.close_note,
    )


def _on(target: Resolved, conn: Connection, svc: Svc, info: Info, action: str, object_type: str) -> Any:
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


@router.post("/patients/{patient_id}/notes", response_model=NoteOut, status_code=201, summary="Start a consult note")
def start_note(body: NewNoteIn, target: PatientNoteWriter, conn: Db, svc: Svc, info: Info) -> NoteOut:
    with _on(target, conn, svc, info, "note.create", "consult_note") as rec, _rules():
        started = rules.start_note(
            conn,
            org_id=target.org_id,
            patient_id=target.object_id,
            request_id=body.request_id,
            by=target.caller.user_id,
            now=svc.clock.now(),
        )
        rec.object_id = started.note.note_id
        out = _note_out(conn, started.note)
    return out


@router.get("/patients/{patient_id}/notes", response_model=list[NoteSummary], summary="A patient's consult notes")
def patient_notes(target: PatientNotes, conn: Db, svc: Svc, info: Info) -> list[NoteSummary]:
    with _on(target, conn, svc, info, "notes.read", "consult_note"):
        rows = note_store.list_notes(conn, target.org_id, target.object_id)
    return [
        NoteSummary(note_id=n.note_id, request_id=n.request_id, created_at=n.created_at, created_by=n.created_by)
        for n in rows
    ]


@router.get("/notes/{note_id}", response_model=NoteOut, summary="A consult note with every version")
def read_note(target: NoteReader, conn: Db, svc: Svc, info: Info) -> NoteOut:
    with _on(target, conn, svc, info, "note.read", "consult_note"):
        out = _note_out(conn, target.row)
    return out


@router.put(
    "/notes/{note_id}/draft", response_model=NoteOut, summary="Save the draft (sections left out keep their text)"
)
def save_draft(body: DraftIn, target: NoteWriter, conn: Db, svc: Svc, info: Info) -> NoteOut:
    with _on(target, conn, svc, info, "note.save", "consult_note"), _rules():
        rules.save(
            conn,
            target.object_id,
            subjective=body.subjective,
            objective=body.objective,
            assessment=body.assessment,
            plan=body.plan,
            by=target.caller.user_id,
            now=svc.clock.now(),
        )
        out = _note_out(conn, target.row)
    return out


@router.post("/notes/{note_id}/sign", response_model=NoteOut, summary="Sign the draft: it is read-only from then on")
def sign_note(target: NoteWriter, conn: Db, svc: Svc, info: Info) -> NoteOut:
    with _on(target, conn, svc, info, "note.sign", "consult_note"), _rules():
        rules.sign(conn, target.object_id, by=target.caller.user_id, now=svc.clock.now())
        out = _note_out(conn, target.row)
    return out


@router.post("/notes/{note_id}/amend", response_model=NoteOut, summary="Draft an amendment of the signed note")
def amend_note(body: AmendIn, target: NoteWriter, conn: Db, svc: Svc, info: Info) -> NoteOut:
    with _on(target, conn, svc, info, "note.amend", "consult_note") as rec, _rules():
        rec.reason = body.reason
        rules.amend(conn, target.object_id, reason=body.reason, by=target.caller.user_id, now=svc.clock.now())
        out = _note_out(conn, target.row)
    return out


@router.get(
    "/notes/{note_id}/fhir",
    summary="The signed note as FHIR R4: an Encounter and a DocumentReference in a collection Bundle",
    responses={200: {"content": {"application/fhir+json": {}}}},
)
def note_fhir(target: NoteReader, conn: Db, svc: Svc, info: Info) -> dict[str, Any]:
    with _on(target, conn, svc, info, "note.fhir_export", "consult_note"):
        signed = [v for v in note_store.versions(conn, target.object_id) if v.signed_at is not None]
        if not signed:
            raise Conflict("only a signed note is exported", code="not_signed")
        bundle = fhir_bundle(target.row, signed[-1], len(signed) > 1)
    return bundle


def _note_text(v: VersionRow) -> str:
    parts = [("Subjective", v.subjective), ("Objective", v.objective), ("Assessment", v.assessment), ("Plan", v.plan)]
    return "\n\n".join(f"{title}\n{text.strip()}" for title, text in parts if text.strip()) + "\n"


def fhir_bundle(note: NoteRow, v: VersionRow, amended: bool) -> dict[str, Any]:
    """An ``Encounter`` (a virtual visit) and the note as a ``DocumentReference`` (LOINC 11488-4,
    consult note) whose content is the signed text, in a ``collection`` Bundle."""
    patient = {"reference": f"Patient/{patient_fhir_id(note.patient_id)}"}
    encounter_id = f"enc-{note.note_id}"
    assert v.signed_at is not None  # noqa: S101 - only signed versions are exported
    encounter = {
        "resourceType": "Encounter",
        "id": encounter_id,
        "status": "finished",
        "class": {
            "system": "http://terminology.hl7.org/CodeSystem/v3-ActCode",
            "code": "VR",
            "display": "virtual",
        },
        "subject": patient,
        "period": {"start": note.created_at.isoformat(), "end": v.signed_at.isoformat()},
        "identifier": [{"system": "urn:vigil:consult-request", "value": str(note.request_id)}]
        if note.request_id is not None
        else [],
    }
    document = {
        "resourceType": "DocumentReference",
        "id": f"note-{note.note_id}-v{v.version}",
        "status": "current",
        "docStatus": "amended" if amended else "final",
        "type": {"coding": [{"system": "http://loinc.org", "code": "11488-4", "display": "Consult note"}]},
        "subject": patient,
        "date": v.signed_at.isoformat(),
        "author": [{"reference": f"Practitioner/{v.signed_by}"}],
        "content": [
            {
                "attachment": {
                    "contentType": "text/plain; charset=utf-8",
                    "data": base64.b64encode(_note_text(v).encode("utf-8")).decode("ascii"),
                    "title": "Consult note",
                }
            }
        ],
        "context": {"encounter": [{"reference": f"Encounter/{encounter_id}"}]},
    }
    return {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [
            {"fullUrl": f"urn:vigil:Encounter/{encounter_id}", "resource": encounter},
            {"fullUrl": f"urn:vigil:DocumentReference/{document['id']}", "resource": document},
        ],
    }


@router.post("/patients/{patient_id}/tasks", response_model=TaskOut, status_code=201, summary="A follow-up task")
def create_task(body: TaskIn, target: PatientNoteWriter, conn: Db, svc: Svc, info: Info) -> TaskOut:
    with _on(target, conn, svc, info, "task.create", "care_task") as rec, _rules():
        row = rules.new_task(
            conn,
            org_id=target.org_id,
            patient_id=target.object_id,
            note_id=body.note_id,
            kind=body.kind,
            due_in_hours=body.due_in_hours,
            detail=body.detail,
            metrics=body.metrics,
            by=target.caller.user_id,
            now=svc.clock.now(),
        )
        rec.object_id = row.task_id
    return _task_out(row)


@router.get("/patients/{patient_id}/tasks", response_model=list[TaskOut], summary="A patient's tasks, open first")
def patient_tasks(target: PatientTasks, conn: Db, svc: Svc, info: Info) -> list[TaskOut]:
    with _on(target, conn, svc, info, "tasks.read", "care_task"):
        rows = care_tasks.patient_tasks(conn, target.org_id, target.object_id)
    return [_task_out(t) for t in rows]


@router.get("/tasks", response_model=list[TaskOut], summary="The care team's task list: my panel's open tasks")
def task_list(
    who: TaskReader, conn: Db, svc: Svc, info: Info, limit: Annotated[int, Query(ge=1, le=500)] = 200
) -> list[TaskOut]:
    with recorded(conn, who, info, svc.clock, action="tasks.read", object_type="task_list") as rec:
        panel = care_teams.panel_patient_ids(conn, who.user_id, who.org_id)
        rows = care_tasks.open_tasks(conn, who.org_id, panel, limit=limit)
        rec.subjects = sorted({t.patient_id for t in rows})
    return [_task_out(t) for t in rows]


@router.post("/tasks/{task_id}/close", response_model=TaskOut, summary="Close a task as done or canceled")
def close_task(body: CloseIn, target: TaskCloser, conn: Db, svc: Svc, info: Info) -> TaskOut:
    with _on(target, conn, svc, info, f"task.{body.status}", "care_task"), _rules():
        row = rules.close_task(
            conn, target.object_id, status=body.status, note=body.note, by=target.caller.user_id, now=svc.clock.now()
        )
    return _task_out(row)

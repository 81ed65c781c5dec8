"""Consult notes and follow-up tasks: the rules, over :mod:`store.consult_notes` and
:mod:`store.care_tasks`.

- A note starts as a draft about one patient (optionally the consult request it followed) with its
  *objective* section pre-filled from the patient's recent vitals (the latest value of each metric
  in the last ``VITALS_WINDOW``), kept as a snapshot with the version.
- A draft is saved as often as needed; signing needs an assessment and a plan and freezes the
  version (the database refuses changing a signed version). An amendment is a new draft version
  that names the signed version it amends and why; it starts as a copy of it and is signed in turn.
- Follow-up tasks (re-measure in N hours, change thresholds, schedule the next consult, other) go
  on the care team's task list, due at a time; done or canceled by a member of the care team.

The API authorises (the patient in the caller's panel) and audits; this module checks the rest.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final

from consult.errors import ConsultError
from rpm_core.metrics import CATALOGUE, METRIC_NAMES
from store import care_tasks, consult_notes
from store import readings as reading_store
from store.connection import Connection
from store.consult_notes import NoteRow, NoteText, VersionRow
from store.consults import get_consult_request

__all__ = [
    "MAX_SECTION",
    "VITALS_WINDOW",
    "NoteRefused",
    "Started",
    "amend",
    "close_task",
    "new_task",
    "recent_vitals",
    "save",
    "sign",
    "start_note",
    "vitals_text",
]

VITALS_WINDOW: Final = timedelta(hours=72)
# UCUM codes as people write them.
_UNITS: Final = {"mm[Hg]": "mmHg", "Cel": "°C", "kg/m2": "kg/m²"}
MAX_SECTION: Final = 20_000


class NoteRefused(ConsultError):
    """A note or task operation the rules refuse; ``code`` is stable, ``field`` names the input."""

    reason = "note_refused"

    def __init__(self, detail: str, *, code: str, field: str | None = None, conflict: bool = False) -> None:
        super().__init__(detail)
        self.detail = detail
        self.code = code
        self.field = field
        self.conflict = conflict  # the note is in the wrong state (409), not a bad value (422)


@dataclass(frozen=True, slots=True)
class Started:
    note: NoteRow
    version: int


def recent_vitals(conn: Connection, org_id: str, patient_id: str, now: datetime) -> list[dict[str, Any]]:
    """The latest value of each metric within ``VITALS_WINDOW`` before ``now`` (a JSON snapshot)."""
    found = reading_store.latest(conn, org=org_id, patients=[patient_id])
    out = []
    for v in found:
        if now - VITALS_WINDOW <= v.time <= now:
            m = CATALOGUE[v.metric]
            out.append(
                {"metric": v.metric, "display": m.display, "value": v.value, "unit": m.unit, "at": v.time.isoformat()}
            )
    return out


def vitals_text(vitals: list[dict[str, Any]]) -> str:
    if not vitals:
        return "No readings in the last 72 hours."
    lines = ["Recent readings (latest in the last 72 hours):"]
    for v in vitals:
        at = datetime.fromisoformat(str(v["at"])).strftime("%Y-%m-%d %H:%M UTC")
        unit = _UNITS.get(str(v["unit"]), str(v["unit"]))
        lines.append(f"- {v['display']}: {round(float(v['value']), 1):g} {unit} ({at})")
    return "\n".join(lines)


def _text(
    subjective: str | None, objective: str | None, assessment: str | None, plan: str | None, base: NoteText
) -> NoteText:
    values = {
        "subjective": base.subjective if subjective is None else subjective,
        "objective": base.objective if objective is None else objective,
        "assessment": base.assessment if assessment is None else assessment,
        "plan": base.plan if plan is None else plan,
    }
    for name, value in values.items():
        if len(value) > MAX_SECTION:
            raise NoteRefused(f"{name} is longer than {MAX_SECTION} characters", code="too_long", field=name)
    return NoteText(**values)


def start_note(
    conn: Connection, *, org_id: str, patient_id: str, request_id: int | None, by: str, now: datetime
) -> Started:
    if request_id is not None:
        request = get_consult_request(conn, request_id)
        if request is None or request.org_id != org_id or request.patient_id != patient_id:
            raise NoteRefused("no consult request of this patient", code="bad_request", field="request_id")
    note = consult_notes.create_note(conn, org_id=org_id, patient_id=patient_id, request_id=request_id, by=by, now=now)
    vitals = recent_vitals(conn, org_id, patient_id, now)
    version = consult_notes.add_version(
        conn, note.note_id, NoteText(objective=vitals_text(vitals)), vitals=vitals, by=by, now=now
    )
    return Started(note, version)


def _draft(conn: Connection, note_id: str) -> VersionRow | None:
    return next((v for v in consult_notes.versions(conn, note_id) if v.signed_at is None), None)


def save(
    conn: Connection,
    note_id: str,
    *,
    subjective: str | None,
    objective: str | None,
    assessment: str | None,
    plan: str | None,
    by: str,
    now: datetime,
) -> int:
    """Save the open draft (sections left None keep their text); returns its version."""
    consult_notes.lock_note(conn, note_id)
    draft = _draft(conn, note_id)
    if draft is None:
        raise NoteRefused("the note is signed: amend it to change it", code="signed", conflict=True)
    base = NoteText(draft.subjective, draft.objective, draft.assessment, draft.plan)
    version = consult_notes.save_draft(
        conn, note_id, _text(subjective, objective, assessment, plan, base), by=by, now=now
    )
    assert version is not None  # noqa: S101 - the note is locked and its draft was found
    return version


def sign(conn: Connection, note_id: str, *, by: str, now: datetime) -> int:
    """Sign the open draft; it needs an assessment and a plan. Returns the version signed."""
    consult_notes.lock_note(conn, note_id)
    draft = _draft(conn, note_id)
    if draft is None:
        raise NoteRefused("nothing to sign: the note is signed", code="signed", conflict=True)
    for name in ("assessment", "plan"):
        if not str(getattr(draft, name)).strip():
            raise NoteRefused(f"a note is signed with its {name}", code="incomplete", field=name)
    version = consult_notes.sign_draft(conn, note_id, by=by, now=now)
    assert version is not None  # noqa: S101 - the note is locked and its draft was found
    return version


def amend(conn: Connection, note_id: str, *, reason: str, by: str, now: datetime) -> int:
    """A new draft version amending the latest signed one (a copy of it); returns its number."""
    why = reason.strip()
    if not why or len(why) > 1000:
        raise NoteRefused("an amendment says why (1 to 1000 characters)", code="reason", field="reason")
    consult_notes.lock_note(conn, note_id)
    every = consult_notes.versions(conn, note_id)
    if any(v.signed_at is None for v in every):
        raise NoteRefused("a draft is open: sign it first", code="draft_open", conflict=True)
    signed = every[-1]
    text = NoteText(signed.subjective, signed.objective, signed.assessment, signed.plan)
    return consult_notes.add_version(
        conn, note_id, text, vitals=signed.vitals, by=by, now=now, amends=(signed.version, why)
    )


def new_task(
    conn: Connection,
    *,
    org_id: str,
    patient_id: str,
    note_id: str | None,
    kind: str,
    due_in_hours: float,
    detail: str,
    metrics: list[str],
    by: str,
    now: datetime,
) -> care_tasks.TaskRow:
    if kind not in care_tasks.KINDS:
        raise NoteRefused(f"kind is one of {', '.join(care_tasks.KINDS)}", code="bad_kind", field="kind")
    unknown = set(metrics) - METRIC_NAMES
    if unknown:
        raise NoteRefused("unknown metrics", code="bad_metric", field="metrics")
    if kind == "remeasure" and not metrics:
        raise NoteRefused("a re-measure task names what to measure", code="no_metrics", field="metrics")
    if note_id is not None:
        note = consult_notes.get_note(conn, note_id)
        if note is None or note.patient_id != patient_id or note.org_id != org_id:
            raise NoteRefused("no note of this patient", code="bad_note", field="note_id")
    task = care_tasks.NewTask(
        org_id=org_id,
        patient_id=patient_id,
        note_id=note_id,
        kind=kind,
        detail=detail.strip(),
        metrics=sorted(set(metrics)),
        due_at=now + timedelta(hours=due_in_hours),
        created_by=by,
    )
    return care_tasks.create_task(conn, task, now)


def close_task(
    conn: Connection, task_id: str, *, status: str, note: str | None, by: str, now: datetime
) -> care_tasks.TaskRow:
    if status not in ("done", "canceled"):
        raise NoteRefused("a task is closed as done or canceled", code="bad_status", field="status")
    row = care_tasks.close_task(conn, task_id, status=status, by=by, note=(note or "").strip() or None, now=now)
    if row is None:
        raise NoteRefused("the task is closed already", code="closed", conflict=True)
    return row

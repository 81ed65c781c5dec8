"""``/api/v1/patients``: enrolment (demographics, conditions, consent with date and version, care
teams, the monitoring episode and its set-up) and a patient's alert settings.

The settings are the alert engine's own per-patient document, validated with the alert config's
models (:func:`clinician_api.conditions.validate_settings`); the engine reads it on every
evaluation, so a change applies to the next reading without a restart. Writes name the version
they read (a concurrent change is a 409). Every call writes one audit row.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends
from pydantic import BaseModel, ConfigDict, Field, field_validator

from alerts.config import PatientConfig
from alerts.errors import AlertsConfigError
from clinician_api.access import Resolved, guard
from clinician_api.audit import recorded
from clinician_api.auth.roles import Permission
from clinician_api.conditions import CONDITIONS, Condition, defaults_for, reseed, validate_settings
from clinician_api.context import Db, Info, Svc
from clinician_api.errors import Invalid, NotFound
from clinician_api.security import Principal, require
from rpm_core.errors import InvalidIdentifier
from rpm_core.ids import new_id
from rpm_core.ids import patient_id as check_patient_id
from store import care_teams, enrolment
from store import clinician_views as views
from store.connection import Connection
from store.enrolment import ConsentRow, EnrolledPatient, EpisodeRow, NewPatient

__all__ = ["router"]

router = APIRouter(prefix="/patients", tags=["enrolment"])

Enroller = Annotated[Principal, Depends(require(Permission.PATIENTS_ENROL))]
ReadPatient = Annotated[Resolved, Depends(guard("patient", "patient_id", Permission.PANEL_READ))]
EnrolPatient = Annotated[Resolved, Depends(guard("patient", "patient_id", Permission.PATIENTS_ENROL))]
TunePatient = Annotated[Resolved, Depends(guard("patient", "patient_id", Permission.SETTINGS_WRITE))]

Sex = Literal["female", "male", "other", "unknown"]
Method = Literal["written", "verbal", "electronic"]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ConsentIn(Strict):
    decision: Literal["granted", "withdrawn"] = "granted"
    version: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,31}$", description="Version of the consent text.")
    decided_on: date
    method: Method = "written"


def _unique(v: list[str]) -> list[str]:
    if len(set(v)) != len(v):
        raise ValueError("listed twice")
    return v


class EnrolIn(Strict):
    patient_id: str | None = Field(default=None, max_length=128, description="Default: a new pat-… id.")
    display_name: str = Field(min_length=1, max_length=200)
    mrn: str | None = Field(default=None, min_length=1, max_length=64)
    birth_date: date | None = None
    sex: Sex | None = None
    phone: str | None = Field(default=None, min_length=1, max_length=40)
    conditions: list[Condition] = Field(default_factory=list, max_length=4)
    consent: ConsentIn
    care_team_ids: list[str] = Field(min_length=1, max_length=10)
    monitoring_start: date | None = Field(default=None, description="Default: the consent date.")
    settings: dict[str, Any] | None = Field(default=None, description="Alert settings on top of the conditions'.")

    _u1 = field_validator("conditions")(_unique)
    _u2 = field_validator("care_team_ids")(_unique)


class EnrolmentPatch(Strict):
    display_name: str | None = Field(default=None, min_length=1, max_length=200)
    mrn: str | None = Field(default=None, min_length=1, max_length=64)
    birth_date: date | None = None
    sex: Sex | None = None
    phone: str | None = Field(default=None, min_length=1, max_length=40)
    conditions: list[Condition] | None = Field(default=None, max_length=4)

    _u = field_validator("conditions")(lambda v: None if v is None else _unique(v))


class ConsentOut(BaseModel):
    consent_id: str
    decision: str
    version: str
    decided_on: date
    method: str
    recorded_by: str
    recorded_at: datetime


class EpisodeOut(BaseModel):
    episode_id: str
    start_date: date
    end_date: date | None
    setup_at: datetime | None
    setup_by: str | None


class TeamOut(BaseModel):
    team_id: str
    name: str


class EnrolmentOut(BaseModel):
    patient_id: str
    display_name: str
    mrn: str | None
    birth_date: date | None
    sex: str | None
    phone: str | None
    conditions: list[str]
    consent: ConsentOut | None = Field(description="The decision in force (the newest).")
    consent_history: list[ConsentOut]
    care_teams: list[TeamOut]
    episode: EpisodeOut | None
    settings_version: int
    enrolled_at: datetime | None


class SetupIn(Strict):
    at: datetime | None = Field(default=None, description="When the set-up and education took place; default now.")


class BandOut(BaseModel):
    op: str
    value: float
    severity: str
    confirm: int
    within_h: float
    sustain_min: float | None
    label: str


class SettingsOut(BaseModel):
    patient_id: str
    version: int
    settings: dict[str, Any] = Field(description="The patient's own document (alert keys only).")
    condition_defaults: dict[str, Any]
    spo2_scale: int
    expected_metrics: list[str] | None
    disabled_rules: list[str]
    bands: dict[str, list[BandOut]] = Field(description="Thresholds in force per metric (defaults + own).")


class SettingsIn(Strict):
    version: int = Field(ge=1, description="The version this change is based on (from GET).")
    settings: dict[str, Any]


def _consent(c: ConsentRow) -> ConsentOut:
    return ConsentOut(
        consent_id=c.consent_id,
        decision=c.decision,
        version=c.version,
        decided_on=c.decided_on,
        method=c.method,
        recorded_by=c.recorded_by,
        recorded_at=c.recorded_at,
    )


def _episode(e: EpisodeRow | None) -> EpisodeOut | None:
    if e is None:
        return None
    return EpisodeOut(
        episode_id=e.episode_id, start_date=e.start_date, end_date=e.end_date, setup_at=e.setup_at, setup_by=e.setup_by
    )


def _enrolment(conn: Connection, p: EnrolledPatient) -> EnrolmentOut:
    history = enrolment.consents(conn, p.patient_id, p.org_id)
    return EnrolmentOut(
        patient_id=p.patient_id,
        display_name=p.display_name,
        mrn=p.mrn,
        birth_date=p.birth_date,
        sex=p.sex,
        phone=p.phone,
        conditions=list(p.conditions),
        consent=_consent(history[0]) if history else None,
        consent_history=[_consent(c) for c in history],
        care_teams=[TeamOut(team_id=t, name=n) for t, n in views.patient_teams(conn, p.patient_id, p.org_id)],
        episode=_episode(enrolment.current_episode(conn, p.patient_id, p.org_id)),
        settings_version=p.settings_version,
        enrolled_at=p.enrolled_at,
    )


def _checked_settings(svc: Svc, doc: dict[str, Any], field: str) -> None:
    try:
        validate_settings(doc, svc.settings.alerts_rules)
    except AlertsConfigError as exc:
        raise Invalid(exc.why, field=field, code="invalid_settings") from exc


def _teams(conn: Connection, who: Principal, team_ids: list[str]) -> list[care_teams.TeamRow]:
    """The teams named, each of the caller's organisation and, unless an admin, with the caller in it."""
    out = []
    for tid in team_ids:
        team = care_teams.get_team(conn, tid, who.org_id)
        if team is None or (who.role != "admin" and who.user_id not in care_teams.team_members(conn, team)):
            raise Invalid(
                "a care team must be one of yours in this organisation", field="care_team_ids", code="bad_team"
            )
        out.append(team)
    return out


@router.post("", response_model=EnrolmentOut, status_code=201, summary="Enrol a patient")
def enrol(body: EnrolIn, who: Enroller, conn: Db, svc: Svc, info: Info) -> EnrolmentOut:
    try:
        pid = check_patient_id(body.patient_id) if body.patient_id else new_id("pat")
    except InvalidIdentifier as exc:
        raise Invalid("not a valid patient id", field="patient_id", code="bad_id") from exc
    if body.consent.decision != "granted":
        raise Invalid("enrolment needs consent to monitoring", field="consent.decision", code="no_consent")
    now = svc.clock.now()
    if body.birth_date is not None and body.birth_date > now.date():
        raise Invalid("the birth date is in the future", field="birth_date", code="bad_date")
    settings = {**defaults_for(body.conditions), **(body.settings or {})}
    with recorded(
        conn, who, info, svc.clock, action="patient.enrol", object_type="patient", object_id=pid, patient_id=pid
    ):
        _checked_settings(svc, settings, "settings")
        teams = _teams(conn, who, body.care_team_ids)
        row = enrolment.create_patient(
            conn,
            NewPatient(
                org_id=who.org_id,
                patient_id=pid,
                display_name=body.display_name,
                mrn=body.mrn,
                birth_date=body.birth_date,
                sex=body.sex,
                phone=body.phone,
                conditions=tuple(c for c in CONDITIONS if c in body.conditions),
                settings=settings,
            ),
            by=who.user_id,
            now=now,
        )
        enrolment.add_consent(
            conn,
            org_id=who.org_id,
            patient_id=pid,
            decision="granted",
            version=body.consent.version,
            decided_on=body.consent.decided_on,
            method=body.consent.method,
            by=who.user_id,
            now=now,
        )
        enrolment.open_episode(
            conn, org_id=who.org_id, patient_id=pid, start=body.monitoring_start or body.consent.decided_on, now=now
        )
        for team in teams:
            care_teams.add_patient(conn, team, pid, now)
        out = _enrolment(conn, row)
    return out


def _enrolled(conn: Connection, target: Resolved, *, for_update: bool = False) -> EnrolledPatient:
    row = enrolment.get_enrolled(conn, target.object_id, target.org_id, for_update=for_update)
    if row is None:  # pragma: no cover - resolved a moment ago
        raise NotFound()
    return row


@router.get("/{patient_id}/enrolment", response_model=EnrolmentOut)
def get_enrolment(target: ReadPatient, conn: Db, svc: Svc, info: Info) -> EnrolmentOut:
    with recorded(
        conn,
        target.caller,
        info,
        svc.clock,
        action="enrolment.read",
        object_type="patient",
        object_id=target.object_id,
        patient_id=target.patient_id,
        basis=target.basis,
    ):
        out = _enrolment(conn, _enrolled(conn, target))
    return out


@router.patch("/{patient_id}/enrolment", response_model=EnrolmentOut, summary="Demographics and conditions")
def patch_enrolment(body: EnrolmentPatch, target: EnrolPatient, conn: Db, svc: Svc, info: Info) -> EnrolmentOut:
    who, now = target.caller, svc.clock.now()
    fields = body.model_dump(exclude_unset=True)
    if fields.get("display_name", "") is None:
        raise Invalid("a patient needs a name", field="display_name", code="required")
    if fields.get("birth_date") is not None and fields["birth_date"] > now.date():
        raise Invalid("the birth date is in the future", field="birth_date", code="bad_date")
    with recorded(
        conn,
        who,
        info,
        svc.clock,
        action="patient.update",
        object_type="patient",
        object_id=target.object_id,
        patient_id=target.patient_id,
        basis=target.basis,
    ) as rec:
        row = _enrolled(conn, target, for_update=True)
        if "conditions" in fields:
            fields["conditions"] = [c for c in CONDITIONS if c in (fields["conditions"] or [])]
            changed = reseed(row.conditions, fields["conditions"], row.settings)
            if changed != row.settings:
                _checked_settings(svc, changed, "conditions")
                enrolment.put_settings(
                    conn,
                    row.patient_id,
                    row.org_id,
                    changed,
                    expected_version=row.settings_version,
                    by=who.user_id,
                    now=now,
                )
                rec.reason = "settings reseeded"
        enrolment.update_patient(conn, row.patient_id, row.org_id, fields)
        out = _enrolment(conn, _enrolled(conn, target))
    return out


@router.post("/{patient_id}/consents", response_model=ConsentOut, status_code=201, summary="Record a consent decision")
def record_consent(body: ConsentIn, target: EnrolPatient, conn: Db, svc: Svc, info: Info) -> ConsentOut:
    who, now = target.caller, svc.clock.now()
    if body.decided_on > now.date():
        raise Invalid("the decision date is in the future", field="decided_on", code="bad_date")
    with recorded(
        conn,
        who,
        info,
        svc.clock,
        action=f"consent.{'grant' if body.decision == 'granted' else 'withdraw'}",
        object_type="consent",
        patient_id=target.patient_id,
        basis=target.basis,
    ) as rec:
        row = enrolment.add_consent(
            conn,
            org_id=target.org_id,
            patient_id=target.object_id,
            decision=body.decision,
            version=body.version,
            decided_on=body.decided_on,
            method=body.method,
            by=who.user_id,
            now=now,
        )
        rec.object_id = row.consent_id
    return _consent(row)


@router.post("/{patient_id}/setup", response_model=EpisodeOut, summary="Record device set-up and education (99453)")
def record_setup(body: SetupIn, target: EnrolPatient, conn: Db, svc: Svc, info: Info) -> EpisodeOut:
    who, now = target.caller, svc.clock.now()
    at = body.at or now
    if at.tzinfo is None:
        raise Invalid("the time needs a zone", field="at", code="naive_time")
    if at > now:
        raise Invalid("the set-up is in the future", field="at", code="bad_date")
    with recorded(
        conn,
        who,
        info,
        svc.clock,
        action="episode.setup",
        object_type="episode",
        patient_id=target.patient_id,
        basis=target.basis,
    ) as rec:
        episode = enrolment.current_episode(conn, target.object_id, target.org_id)
        if episode is None:
            episode = enrolment.open_episode(
                conn, org_id=target.org_id, patient_id=target.object_id, start=at.date(), now=now
            )
        rec.object_id = episode.episode_id
        done = enrolment.record_setup(conn, episode.episode_id, at=at, by=who.user_id)
    out = _episode(done)
    assert out is not None  # noqa: S101 - record_setup returns the row
    return out


def _settings_out(svc: Svc, p: EnrolledPatient) -> SettingsOut:
    own = dict(p.settings)
    try:
        resolved = PatientConfig.resolve(svc.settings.alerts_rules, own)
    except AlertsConfigError:
        resolved = PatientConfig.resolve(svc.settings.alerts_rules, None)  # what the engine falls back to
    return SettingsOut(
        patient_id=p.patient_id,
        version=p.settings_version,
        settings=own,
        condition_defaults=defaults_for(p.conditions),
        spo2_scale=resolved.spo2_scale,
        expected_metrics=list(resolved.expected_metrics) if resolved.expected_metrics is not None else None,
        disabled_rules=sorted(resolved.disabled_rules),
        bands={
            metric: [BandOut.model_validate(b.model_dump()) for b in bands]
            for metric, bands in sorted(resolved.bands.items())
        },
    )


@router.get("/{patient_id}/settings", response_model=SettingsOut, summary="Alert thresholds and rule settings")
def get_settings(target: ReadPatient, conn: Db, svc: Svc, info: Info) -> SettingsOut:
    with recorded(
        conn,
        target.caller,
        info,
        svc.clock,
        action="settings.read",
        object_type="patient_settings",
        object_id=target.object_id,
        patient_id=target.patient_id,
        basis=target.basis,
    ):
        out = _settings_out(svc, _enrolled(conn, target))
    return out


@router.put("/{patient_id}/settings", response_model=SettingsOut, summary="Replace the patient's alert settings")
def put_settings(body: SettingsIn, target: TunePatient, conn: Db, svc: Svc, info: Info) -> SettingsOut:
    who = target.caller
    with recorded(
        conn,
        who,
        info,
        svc.clock,
        action="settings.update",
        object_type="patient_settings",
        object_id=target.object_id,
        patient_id=target.patient_id,
        basis=target.basis,
    ):
        _checked_settings(svc, body.settings, "settings")
        version = enrolment.put_settings(
            conn,
            target.object_id,
            target.org_id,
            body.settings,
            expected_version=body.version,
            by=who.user_id,
            now=svc.clock.now(),
        )
        row = _enrolled(conn, target)
        out = _settings_out(svc, row)
    assert out.version == version  # noqa: S101 - read in the same transaction
    return out

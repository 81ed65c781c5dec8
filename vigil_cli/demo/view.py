"""What ``vigil demo`` shows: a snapshot of the platform read from the database and the agents'
outboxes, rendered as a live terminal view (rich) or as the headless JSON summary."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Final

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from edge_agent.errors import EdgeError
from edge_agent.outbox.inspect import inspect_outbox
from rpm_core.errors import VigilError
from store import overview
from store.connection import Connection
from store.readings import latest

__all__ = ["Snapshot", "render", "sparkline", "take_snapshot"]

_BARS: Final = "▁▂▃▄▅▆▇█"
_VITALS: Final = ("heart_rate", "spo2", "bp_systolic", "bp_diastolic", "body_temperature", "body_weight", "glucose")
_SEVERITY_STYLE: Final = {"critical": "bold white on red", "high": "bold red", "medium": "yellow", "low": "cyan"}


def sparkline(values: list[float], width: int = 24) -> str:
    """The last ``width`` values as block characters scaled between their min and max."""
    tail = values[-width:]
    if not tail:
        return ""
    low, high = min(tail), max(tail)
    span = high - low or 1.0
    return "".join(_BARS[min(len(_BARS) - 1, int((v - low) / span * (len(_BARS) - 1) + 0.5))] for v in tail)


@dataclass
class PatientRow:
    patient_id: str
    name: str
    latest: dict[str, float] = field(default_factory=dict)
    recent: dict[str, list[float]] = field(default_factory=dict)
    agent_id: str | None = None
    agent_last_seen: datetime | None = None
    devices_seen: int = 0
    lowest_battery: int | None = None
    outbox_depth: int | None = None


@dataclass
class Snapshot:
    at: datetime
    counts: overview.OrgCounts
    patients: list[PatientRow]
    alerts: list[overview.QueuedAlert]


def _outbox_depth(path: Path) -> int | None:
    try:
        return inspect_outbox(path).stats.depth
    except (EdgeError, VigilError, OSError):
        return None  # not enrolled yet, or busy: shown as "-"


def take_snapshot(conn: Connection, org: str, outboxes: dict[str, Path]) -> Snapshot:
    people = overview.patients(conn, org)
    ids = [p for p, _ in people]
    rows = {p: PatientRow(p, name) for p, name in people}
    for value in latest(conn, org=org, patients=ids, metrics=_VITALS):
        rows[value.patient_id].latest[value.metric] = value.value
    recent = overview.recent_values(conn, org, ids, ("heart_rate", "spo2"), since=timedelta(minutes=5))
    for (patient, metric), values in recent.items():
        rows[patient].recent[metric] = values
    for contact in overview.agent_contacts(conn, org):
        row = rows.get(contact.patient_id or "")
        if row is not None and contact.status == "active":
            row.agent_id, row.agent_last_seen = contact.agent_id, contact.last_seen_at
            row.devices_seen, row.lowest_battery = contact.devices_seen, contact.lowest_battery_pct
    for patient, path in outboxes.items():
        if patient in rows:
            rows[patient].outbox_depth = _outbox_depth(path)
    conn.commit()  # end the read transaction: the next snapshot sees new rows
    return Snapshot(
        datetime.now(UTC), overview.org_counts(conn, org), list(rows.values()), overview.alert_queue(conn, org)
    )


def _ago(t: datetime | None, now: datetime) -> str:
    if t is None:
        return "never"
    s = max(0, int((now - t).total_seconds()))
    return f"{s} s ago" if s < 120 else f"{s // 60} min ago"


def _fmt(v: float | None, digits: int = 0) -> str:
    return "-" if v is None else f"{v:.{digits}f}"


def render(snap: Snapshot, *, header: str, started: float, now_mono: float, progress: list[str]) -> RenderableType:
    c = snap.counts
    title = Text.assemble(
        ("Vigil demo", "bold"),
        f"  {header}  up {int(now_mono - started)} s  ·  ",
        (f"{c.readings} readings", "bold green"),
        f" from {c.devices} devices  ·  {c.patients} patients  ·  {c.alerts_opened} alerts "
        f"({c.alerts_escalated} escalated, {c.consult_requests} video consult requests)",
    )
    patients = Table(expand=True, title="Patients: latest vitals (sparklines: last 5 minutes)", title_justify="left")
    for col in ("patient", "heart rate /min", "SpO2 %", "BP mm[Hg]", "temp Cel", "weight kg", "glucose mg/dL", "agent"):
        patients.add_column(col)
    for p in snap.patients:
        hr, spo2 = p.latest.get("heart_rate"), p.latest.get("spo2")
        bp = (
            f"{_fmt(p.latest.get('bp_systolic'))}/{_fmt(p.latest.get('bp_diastolic'))}"
            if "bp_systolic" in p.latest
            else "-"
        )
        spo2_style = "bold red" if spo2 is not None and spo2 <= 92 else ""
        agent = (
            f"seen {_ago(p.agent_last_seen, snap.at)}, {p.devices_seen} devices reported"
            + ("" if p.lowest_battery is None else f", lowest battery {p.lowest_battery}%")
            + f", outbox {'-' if p.outbox_depth is None else p.outbox_depth}"
        )
        patients.add_row(
            f"{p.name}\n[dim]{p.patient_id}[/dim]",
            f"{_fmt(hr)} {sparkline(p.recent.get('heart_rate', []))}",
            Text(f"{_fmt(spo2)} {sparkline(p.recent.get('spo2', []))}", style=spo2_style),
            bp,
            _fmt(p.latest.get("body_temperature"), 1),
            _fmt(p.latest.get("body_weight"), 1),
            _fmt(p.latest.get("glucose")),
            agent,
        )
    alerts = Table(expand=True, title="Alert queue (unresolved, worst first)", title_justify="left")
    for col in ("opened", "patient", "kind", "metric", "severity", "state", "escalation", "summary"):
        alerts.add_column(col)
    names = {p.patient_id: p.name for p in snap.patients}
    for a in snap.alerts:
        step = a.last_action.replace("_", " ") if a.last_action else "due"
        if a.consult_requested:
            step += " · video consult requested"
        alerts.add_row(
            a.opened_at.astimezone(UTC).strftime("%H:%M:%S"),
            names.get(a.patient_id, a.patient_id),
            a.kind,
            a.metric or "-",
            Text(a.severity, style=_SEVERITY_STYLE.get(a.severity, "")),
            a.state,
            step,
            a.summary[:60],
        )
    if not snap.alerts:
        alerts.add_row("", "[dim]no open alerts[/dim]", "", "", "", "", "", "")
    footer = Text("\n".join(progress[-3:]) + "\nCtrl-C stops everything cleanly.", style="dim")
    return Group(title, patients, alerts, footer)

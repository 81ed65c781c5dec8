"""What each portal page shows, read through ``store`` in the page's audited transaction.

Readings come from the same sources as the clinician's charts (``store.readings.series``, hourly
buckets; ``store.summaries`` for the newest value of each metric); devices from the patient's
current home hub and its devices (``store.devices.devices_of``, ``store.fleet``); consent from
the enrolment aggregate's history (``store.enrolment.consents``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Final
from zoneinfo import ZoneInfo

from alerts.config import PatientConfig, RulesConfig
from alerts.errors import AlertsConfigError
from clinician_api.portal.charts import WeekChart, week_chart
from clinician_api.portal.wording import (
    PROFILE_NAMES,
    TOPICS,
    Battery,
    Heard,
    HourValues,
    TargetRange,
    Topic,
    WeekVerdict,
    ago,
    battery,
    day_words,
    heard,
    number,
    target_range,
    unit_of,
    value_words,
    week_verdict,
)
from store import enrolment, fleet, summaries
from store.connection import Connection
from store.devices import devices_of
from store.readings import BUCKET_ORIGIN, Bucket, LatestValue, series

__all__ = [
    "ConsentLine",
    "ConsentView",
    "DayRow",
    "DeviceCard",
    "TopicView",
    "consent_view",
    "devices_view",
    "readings_view",
    "week_start",
]

_HOUR: Final = timedelta(hours=1)
_WEEK: Final = timedelta(days=7)
_METHODS: Final = {"written": "on a signed form", "verbal": "by telling your care team", "electronic": "online"}


def week_start(now: datetime) -> tuple[datetime, datetime]:
    """[start, end) of the last 7 days in whole hours (the hour now running included)."""
    end = BUCKET_ORIGIN + ((now - BUCKET_ORIGIN) // _HOUR + 1) * _HOUR
    return end - _WEEK, end


def patient_config(conn: Connection, rules: RulesConfig, *, org_id: str, patient_id: str) -> PatientConfig:
    """The patient's alert rules as the engine applies them (its fallback too: the defaults when
    the patient's own document does not validate)."""
    row = enrolment.get_enrolled(conn, patient_id, org_id)
    try:
        return PatientConfig.resolve(rules, row.settings if row else None)
    except AlertsConfigError:
        return PatientConfig.resolve(rules, None)


@dataclass(frozen=True, slots=True)
class DayRow:
    day: str  # "Sunday 1 March"
    average: str
    lowest: str
    highest: str
    readings: int


@dataclass(frozen=True, slots=True)
class TopicView:
    topic: Topic
    verdict: WeekVerdict
    targets: list[tuple[str, str]]  # (what, "below 130 mmHg")
    latest: str | None  # "128/79 mmHg"
    latest_when: str | None  # "2 hours ago (Sunday 1 March, 14:05)"
    chart: WeekChart | None
    days: list[DayRow]
    unit: str


def _days(topic: Topic, by_metric: dict[str, list[Bucket]], zone: ZoneInfo) -> list[DayRow]:
    acc: dict[date, dict[str, tuple[float, float, float, int]]] = {}
    for metric, buckets in by_metric.items():
        for b in buckets:
            d = b.start.astimezone(zone).date()
            s, lo, hi, n = acc.setdefault(d, {}).get(metric, (0.0, b.min, b.max, 0))
            acc[d][metric] = (s + b.avg * b.count, min(lo, b.min), max(hi, b.max), n + b.count)
    rows = []
    for d in sorted(acc, reverse=True):
        per = acc[d]
        first = next(m for m in topic.metrics if m in per)
        rows.append(
            DayRow(
                day=f"{d:%A} {d.day} {d:%B}",
                average=value_words(topic, {m: s / n for m, (s, _, _, n) in per.items()}),
                lowest=value_words(topic, {m: lo for m, (_, lo, _, _) in per.items()}),
                highest=value_words(topic, {m: hi for m, (_, _, hi, _) in per.items()}),
                readings=per[first][3],
            )
        )
    return rows


def _target_lines(topic: Topic, ranges: dict[str, TargetRange | None]) -> list[tuple[str, str]]:
    names = {"bp_systolic": "Upper number", "bp_diastolic": "Lower number"}
    out = []
    for m in topic.metrics:
        rng = ranges.get(m)
        if rng is not None:
            out.append((names.get(m, "Target"), rng.words(m)))
    return out


def readings_view(
    conn: Connection,
    *,
    flavor: str,
    rules: RulesConfig,
    org_id: str,
    patient_id: str,
    now: datetime,
    zone: str,
) -> list[TopicView]:
    """One view per topic the patient has ever measured, in the order of :data:`TOPICS`."""
    summaries.advance(conn)
    latest = summaries.latest(conn, org=org_id, patients=[patient_id])
    newest = {v.metric: v for v in latest}
    config = patient_config(conn, rules, org_id=org_id, patient_id=patient_id)
    start, end = week_start(now)
    tz = ZoneInfo(zone)
    out = []
    for topic in TOPICS:
        have = [m for m in topic.metrics if m in newest]
        if not have:
            continue
        ranges = {m: target_range(config, m) for m in topic.metrics}
        by_metric = {
            m: series(conn, flavor, org=org_id, patient=patient_id, metric=m, start=start, end=end, bucket=_HOUR)
            for m in have
        }
        hours: dict[datetime, dict[str, tuple[float, int]]] = {}
        for m, buckets in by_metric.items():
            for b in buckets:
                hours.setdefault(b.start, {})[m] = (b.avg, b.count)
        verdict = week_verdict(topic, ranges, [HourValues(t, v) for t, v in sorted(hours.items())])
        chart = week_chart(
            {m: [(b.start + _HOUR / 2, b.avg) for b in bs] for m, bs in by_metric.items() if bs},
            ranges,
            start=start,
            end=end,
            zone=zone,
        )
        when = max(newest[m].time for m in have)
        out.append(
            TopicView(
                topic=topic,
                verdict=verdict,
                targets=_target_lines(topic, ranges),
                latest=value_words(topic, {m: newest[m].value for m in have if newest[m].time == when}),
                latest_when=f"{ago(when, now)} ({day_words(when, zone, with_time=True)})",
                chart=chart,
                days=_days(topic, by_metric, tz),
                unit=unit_of(topic.metrics[0]),
            )
        )
    return out


@dataclass(frozen=True, slots=True)
class DeviceCard:
    kind: str  # 'hub' | 'device'
    name: str  # "Finger pulse oximeter"
    detail: str  # "Nonin 3230" (or "")
    heard: Heard
    battery: Battery | None  # None for the hub (mains powered)
    last_reading: str | None  # "Oxygen level 96 %, 2 hours ago"

    @property
    def ok(self) -> bool:
        return self.heard.ok and (self.battery is None or self.battery.ok)


def _reading_words(values: Sequence[LatestValue], now: datetime) -> str | None:
    if not values:
        return None
    when = max(v.time for v in values)
    at = {v.metric: v.value for v in values if v.time == when}
    parts = [f"{t.title} {value_words(t, at)}" for t in TOPICS if any(m in at for m in t.metrics)]
    if not parts:  # a metric the portal has no topic for
        parts = [f"{m.replace('_', ' ')} {number(m, v)}" for m, v in sorted(at.items())]
    return f"{', '.join(parts)}, {ago(when, now)}"


def devices_view(conn: Connection, *, org_id: str, patient_id: str, now: datetime) -> list[DeviceCard]:
    """The home hub and each device: when last heard from, battery, the last reading it sent."""
    rows = devices_of(conn, [patient_id])
    hubs = [r for r in rows if r.kind == "agent"]
    details = fleet.devices_of_agents(conn, [h.id for h in hubs])
    info = {d.device_id: d for ds in details.values() for d in ds}
    summaries.advance(conn)
    by_device: dict[str, list[LatestValue]] = {}
    for v in summaries.latest(conn, org=org_id, patients=[patient_id]):
        by_device.setdefault(v.device_id, []).append(v)
    cards = [DeviceCard("hub", "Home hub", "", heard(h.last_seen, now), None, None) for h in hubs]
    for r in rows:
        if r.kind != "device":
            continue
        d = info.get(r.id)
        name = PROFILE_NAMES.get(d.profile or "", "Measuring device") if d else "Measuring device"
        detail = " ".join(x for x in ((d.manufacturer, d.model) if d else ()) if x)
        cards.append(
            DeviceCard(
                "device",
                name,
                detail,
                heard(r.last_seen, now),
                battery(r.battery_pct),
                _reading_words(by_device.get(r.id, []), now),
            )
        )
    return cards


@dataclass(frozen=True, slots=True)
class ConsentLine:
    sentence: str  # "You agreed to remote monitoring on Sunday 1 March 2026, on a signed form."
    version: str
    decided_on: date
    granted: bool
    recorded_on: str


@dataclass(frozen=True, slots=True)
class ConsentView:
    current: ConsentLine | None
    history: list[ConsentLine]


def _on(d: date) -> str:
    return f"{d:%A} {d.day} {d:%B %Y}"


def consent_view(conn: Connection, *, org_id: str, patient_id: str, zone: str) -> ConsentView:
    lines = []
    for c in enrolment.consents(conn, patient_id, org_id):
        granted = c.decision == "granted"
        verb = "agreed to remote monitoring" if granted else "stopped your agreement to remote monitoring"
        how = _METHODS.get(c.method, "")
        lines.append(
            ConsentLine(
                sentence=f"You {verb} on {_on(c.decided_on)}{', ' + how if how else ''}.",
                version=c.version,
                decided_on=c.decided_on,
                granted=granted,
                recorded_on=day_words(c.recorded_at.astimezone(UTC), zone),
            )
        )
    return ConsentView(lines[0] if lines else None, lines)

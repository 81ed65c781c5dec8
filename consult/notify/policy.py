"""Whether a due notification is sent now, held back (quiet hours) or canceled: pure decisions.

- A notification to a disabled account, or past its ``not_after`` (an expired link), is canceled.
- A staff notification about an alert (``alert_care_team``, ``alert_page``) is canceled once the
  alert is no longer open (acknowledged or resolved): the escalation it belonged to has stopped.
  A message to the patient is canceled once the alert is resolved.
- Quiet hours, in the recipient's own time zone, hold back email, SMS and push (in-app makes no
  sound) until they end — never for an urgent (critical) notification.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from consult.notify.templates import PATIENT_MESSAGE, STAFF_ALERT_KINDS
from rpm_core.clock import ensure_utc
from store.notification_delivery import Candidate

__all__ = ["Cancel", "Decision", "Defer", "Send", "decide", "quiet_until", "zone"]


@dataclass(frozen=True, slots=True)
class Send:
    pass


@dataclass(frozen=True, slots=True)
class Defer:
    until: datetime
    reason: str = "quiet_hours"


@dataclass(frozen=True, slots=True)
class Cancel:
    reason: str


Decision = Send | Defer | Cancel


def zone(name: str) -> tzinfo:
    """The IANA time zone ``name``; UTC for an unknown or malformed name."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return UTC


def quiet_until(start: time | None, end: time | None, tz_name: str, now: datetime) -> datetime | None:
    """When the quiet hours around ``now`` end (UTC), or None when ``now`` is not in quiet hours.

    ``start``/``end`` are local wall-clock times; ``start > end`` spans midnight (22:00-07:00).
    """
    if start is None or end is None or start == end:
        return None
    tz = zone(tz_name)
    local = ensure_utc(now).astimezone(tz)
    t = local.time().replace(tzinfo=None)
    if start < end:
        inside = start <= t < end
        end_day = local.date()
    else:
        inside = t >= start or t < end
        end_day = local.date() + timedelta(days=1) if t >= start else local.date()
    if not inside:
        return None
    return datetime.combine(end_day, end, tzinfo=tz).astimezone(UTC)


def decide(c: Candidate, now: datetime) -> Decision:
    if c.recipient_status != "active":
        return Cancel("recipient_disabled")
    if c.not_after is not None and c.not_after <= now:
        return Cancel("expired")
    if c.alert_state is not None:
        if c.kind in STAFF_ALERT_KINDS and c.alert_state != "open":
            return Cancel(f"alert_{c.alert_state}")
        if c.kind == PATIENT_MESSAGE and c.alert_state == "resolved":
            return Cancel("alert_resolved")
    if not c.urgent and c.channel != "in_app":
        until = quiet_until(c.quiet_start, c.quiet_end, c.time_zone, now)
        if until is not None:
            return Defer(until)
    return Send()

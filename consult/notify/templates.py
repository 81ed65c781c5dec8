"""What each kind of notification says on each channel: pure functions, no I/O.

The PHI policy: a notification that leaves Vigil (email, SMS, push) names no patient and carries
no value, rule, metric or summary — only that something needs attention and links into Vigil,
where sign-in and the audit log apply. The default text is "Vigil: a new alert needs your
attention" plus a link. The in-app channel is shown inside Vigil after sign-in, so it may carry a
care team's message to the patient (e.g. "Please repeat your blood pressure measurement now");
which channels may carry that text is the ``text_channels`` policy (default: in-app only).

``template_version`` is stored with each notification; a change of wording that matters gets a
new version here, and old rows keep rendering with theirs.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from consult.notify.errors import UnknownTemplate
from rpm_core.metrics import CATALOGUE

__all__ = [
    "ALERT_KINDS",
    "KINDS",
    "PATIENT_MESSAGE",
    "STAFF_ALERT_KINDS",
    "THREAD_MESSAGE",
    "Links",
    "Rendered",
    "patient_message_text",
    "render",
]

ALERT_CARE_TEAM: Final = "alert_care_team"
ALERT_PAGE: Final = "alert_page"
VIDEO_CONSULT: Final = "video_consult_requested"
PATIENT_MESSAGE: Final = "patient_message"
PASSWORD_RESET: Final = "password_reset"  # noqa: S105 - a notification kind
BREAK_GLASS: Final = "break_glass_review"
# A new secure message in a thread the recipient takes part in (consult.messaging): never its text.
THREAD_MESSAGE: Final = "thread_message"
# Kinds about an alert that a staff member can acknowledge through a link; pointless once the
# alert is no longer open (the worker cancels them).
STAFF_ALERT_KINDS: Final = frozenset({ALERT_CARE_TEAM, ALERT_PAGE})
ALERT_KINDS: Final = frozenset({ALERT_CARE_TEAM, ALERT_PAGE, VIDEO_CONSULT, PATIENT_MESSAGE})
KINDS: Final = frozenset({*ALERT_KINDS, PASSWORD_RESET, BREAK_GLASS, THREAD_MESSAGE})

# Plain words for the patient (the catalogue's display names are clinical).
_PLAIN: Final = {
    "bp_systolic": "blood pressure",
    "bp_diastolic": "blood pressure",
    "bp_mean": "blood pressure",
    "spo2": "oxygen level",
    "heart_rate": "pulse",
    "rr_interval": "pulse",
    "glucose": "blood sugar",
    "hba1c": "blood sugar",
    "body_weight": "weight",
    "body_temperature": "temperature",
    "respiratory_rate": "breathing rate",
}


@dataclass(frozen=True, slots=True)
class Links:
    public_url: str
    ack_url: str | None = None
    ack_expires_at: datetime | None = None

    def page(self, path: str) -> str:
        return self.public_url.rstrip("/") + path


@dataclass(frozen=True, slots=True)
class Rendered:
    subject: str  # email subject, push title, in-app title
    text: str  # the body: email text/plain, SMS text, push body, in-app text


def _measurements(params: Mapping[str, Any]) -> list[str]:
    raw = params.get("metrics", "")
    names = [m for m in raw.split(",") if m in CATALOGUE] if isinstance(raw, str) else []
    words: list[str] = []
    for m in names:
        w = _PLAIN.get(m, CATALOGUE[m].display.lower())
        if w not in words:
            words.append(w)
    return words


def patient_message_text(params: Mapping[str, Any]) -> str:
    """The care team's message to the patient (shown in-app; PHI: only where the policy allows)."""
    words = _measurements(params)
    if words:
        what = words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]
        return f"Your care team asks you to measure your {what} again now, the way you usually do."
    return "Your care team asks you to repeat your latest measurements now, the way you usually do."


def _staff_alert(kind: str, params: Mapping[str, Any], links: Links, urgent: bool) -> tuple[str, list[str]]:
    alert_id = int(params["alert_id"])
    if kind == ALERT_PAGE:
        subject = "Vigil: an alert is still waiting for acknowledgement"
    elif kind == VIDEO_CONSULT:
        subject = "Vigil: a video consultation was requested"
    else:
        subject = "Vigil: an urgent alert needs your attention" if urgent else "Vigil: a new alert needs your attention"
    lines = [f"Open it in Vigil: {links.page(f'/alerts/{alert_id}')}"]
    if links.ack_url is not None:
        lines.append(f"Acknowledge it: {links.ack_url}")
        if links.ack_expires_at is not None:
            until = links.ack_expires_at.strftime("%Y-%m-%d %H:%M UTC")
            lines.append(f"(This link works once, for you only, until {until}.)")
    return subject, lines


def render(
    kind: str,
    channel: str,
    params: Mapping[str, Any],
    secret_params: Mapping[str, Any] | None,
    links: Links,
    *,
    urgent: bool = False,
    text_channels: Collection[str] = ("in_app",),
    template_version: int = 1,
) -> Rendered:
    """Subject and text of notification ``kind`` on ``channel``; raises :class:`UnknownTemplate`."""
    if template_version != 1:
        raise UnknownTemplate(f"{kind} v{template_version}")
    if kind in (ALERT_CARE_TEAM, ALERT_PAGE, VIDEO_CONSULT):
        subject, lines = _staff_alert(kind, params, links, urgent)
    elif kind == PATIENT_MESSAGE:
        subject = "Vigil: a message from your care team"
        if channel in text_channels:
            lines = [patient_message_text(params)]
        else:
            lines = [f"Your care team has sent you a message. Read it in Vigil: {links.page('/portal')}"]
    elif kind == PASSWORD_RESET:
        link = (secret_params or {}).get("link")
        if not isinstance(link, str):
            raise UnknownTemplate(f"{kind} without its link")
        subject = "Vigil: reset your password"
        expires = params.get("expires_at")
        until = ""
        if isinstance(expires, str):
            until = datetime.fromisoformat(expires).strftime(" until %Y-%m-%d %H:%M UTC")
        lines = [
            f"Set a new password: {link}",
            f"The link works once{until}. If you did not ask for it, ignore this message.",
        ]
    elif kind == THREAD_MESSAGE:
        thread = str(uuid.UUID(str(params["thread_id"])))  # ValueError for anything but a thread id
        subject = "Vigil: you have a new secure message"
        lines = [f"Read it in Vigil: {links.page(f'/messages/{thread}')}"]
    elif kind == BREAK_GLASS:
        subject = "Vigil: an emergency access needs your review"
        lines = [f"Review it in Vigil: {links.page('/admin/break-glass')}"]
    else:
        raise UnknownTemplate(kind)
    if channel in ("sms", "push"):
        return Rendered(subject, " ".join([subject, *lines]) if channel == "sms" else " ".join(lines))
    if channel == "email":
        return Rendered(subject, "\n\n".join(lines) + "\n")
    return Rendered(subject, "\n".join(lines))

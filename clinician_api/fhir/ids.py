"""FHIR logical ids for Vigil's records, reversible where FHIR's id grammar allows.

A FHIR id is 1 to 64 characters of ``[A-Za-z0-9-.]``. Vigil's ids are wider (device and patient
ids may hold ``:`` and ``_`` and be 128 characters long), so every id is *escaped*: letters, digits
and ``-`` stand for themselves, every other byte of the UTF-8 text becomes ``.`` and two uppercase
hex digits (``AA:BB`` -> ``AA.3ABB``). The escaping is canonical (one text, one id) and
reversible, so a route can turn ``Patient/{id}`` back into the stored id without a lookup.

Kinds (prefixes keep the kinds apart in the shared ``Device`` and ``Observation`` id spaces):

==============  ================================  =============================================
resource        id                                from
==============  ================================  =============================================
Patient         ``{patient}``                     ``patients.patient_id``
Device (PHD)    ``phd-{device}``                  ``devices.device_id`` (the measuring device)
Device (PHG)    ``phg-{agent}``                   ``agents.agent_id`` (the gateway, an edge agent)
Observation     ``rd.{seq}.{micros}.{agent}``     one reading: its dedup key (agent, seq, time)
Observation     ``bp.{seq}.{micros}.{agent}``     a blood-pressure panel: the key of its first reading
Observation     ``bat-{device}``                  a device's last reported battery level
==============  ================================  =============================================

When the escaped form would exceed 64 characters the id is ``{prefix}..`` followed by hex digits
of a SHA-256 of the text: still stable and unique in practice, but not reversible (the parsers
return ``None``); ``..`` never occurs in an escaped id, so the two forms cannot collide. Parsers
raise :class:`~clinician_api.fhir.errors.InvalidFhirId` (and nothing else) for any text that is not
an id this module produces, including non-canonical escapes.
"""

from __future__ import annotations

import hashlib
import re
import string
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final, Literal

from clinician_api.fhir.errors import InvalidFhirId

__all__ = [
    "FHIR_ID_MAX",
    "ObservationRef",
    "ReadingKey",
    "battery_fhir_id",
    "device_fhir_id",
    "escape",
    "gateway_fhir_id",
    "observation_fhir_id",
    "parse_device_fhir_id",
    "parse_observation_fhir_id",
    "parse_patient_fhir_id",
    "patient_fhir_id",
    "unescape",
]

FHIR_ID_MAX: Final = 64
_PLAIN: Final = frozenset(string.ascii_letters + string.digits + "-")
_FHIR_ID: Final = re.compile(r"[A-Za-z0-9\-.]{1,64}")
_ESCAPE: Final = re.compile(r"\.([0-9A-F]{2})")
_HASHED: Final = ".."
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_PHD: Final = "phd-"
_PHG: Final = "phg-"
_BATTERY: Final = "bat-"
_READING: Final = "rd."
_PANEL: Final = "bp."

ObservationKind = Literal["reading", "panel", "battery"]
DeviceKind = Literal["phd", "phg"]


@dataclass(frozen=True, slots=True)
class ReadingKey:
    """A stored reading's identity everywhere in Vigil: (agent, sequence, measured time)."""

    agent_id: str
    seq: int
    measured_at: datetime

    @property
    def micros(self) -> int:
        return (self.measured_at - _EPOCH) // timedelta(microseconds=1)


@dataclass(frozen=True, slots=True)
class ObservationRef:
    """A parsed Observation id: a reading or panel (``key``) or a battery level (``device_id``)."""

    kind: ObservationKind
    key: ReadingKey | None = None
    device_id: str | None = None


def escape(text: str) -> str:
    """``text`` in the id alphabet: letters, digits and ``-`` kept, every other byte ``.XX``."""
    out: list[str] = []
    for ch in text:
        if ch in _PLAIN:
            out.append(ch)
        else:
            out.extend(f".{byte:02X}" for byte in ch.encode("utf-8"))
    return "".join(out)


def unescape(escaped: str) -> str:
    """The text of a canonical escape; raises :class:`InvalidFhirId` otherwise."""
    if not escaped or any(ch not in _PLAIN and ch != "." for ch in escaped):
        raise InvalidFhirId(escaped)
    raw = bytearray()
    pos = 0
    while pos < len(escaped):
        ch = escaped[pos]
        if ch == ".":
            match = _ESCAPE.match(escaped, pos)
            if match is None:
                raise InvalidFhirId(escaped)
            raw.append(int(match.group(1), 16))
            pos = match.end()
        else:
            raw.append(ord(ch))
            pos += 1
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidFhirId(escaped) from None
    if escape(text) != escaped:  # ".41" for "A": one object, one id
        raise InvalidFhirId(escaped)
    return text


def _fit(prefix: str, body: str, text: str) -> str:
    candidate = prefix + body
    if len(candidate) <= FHIR_ID_MAX:
        return candidate
    digest = hashlib.sha256(f"{prefix}{text}".encode()).hexdigest()
    return (prefix + _HASHED + digest)[:FHIR_ID_MAX]


def patient_fhir_id(patient_id: str) -> str:
    return _fit("", escape(patient_id), patient_id)


def device_fhir_id(device_id: str) -> str:
    """The id of the measuring device (a PHD in the PHD IG's terms)."""
    return _fit(_PHD, escape(device_id), device_id)


def gateway_fhir_id(agent_id: str) -> str:
    """The id of the edge agent that relayed the device's data (the PHD IG's gateway, PHG)."""
    return _fit(_PHG, escape(agent_id), agent_id)


def battery_fhir_id(device_id: str) -> str:
    """The id of the Observation of a device's last reported battery level."""
    return _fit(_BATTERY, escape(device_id), device_id)


def observation_fhir_id(key: ReadingKey, kind: Literal["reading", "panel"] = "reading") -> str:
    if key.seq < 0 or key.measured_at < _EPOCH:
        raise InvalidFhirId(f"{key.seq}")
    prefix = _PANEL if kind == "panel" else _READING
    text = f"{key.seq}.{key.micros}.{key.agent_id}"
    return _fit(prefix, f"{key.seq}.{key.micros}.{escape(key.agent_id)}", text)


def _check(fhir_id: str) -> str:
    if not isinstance(fhir_id, str) or _FHIR_ID.fullmatch(fhir_id) is None:
        raise InvalidFhirId(str(fhir_id))
    return fhir_id


def parse_patient_fhir_id(fhir_id: str) -> str | None:
    """The patient id of ``Patient/{fhir_id}``; ``None`` for a hashed (irreversible) id."""
    _check(fhir_id)
    if fhir_id.startswith(_HASHED):
        return None
    return unescape(fhir_id)


def parse_device_fhir_id(fhir_id: str) -> tuple[DeviceKind, str | None]:
    """``("phd", device_id)`` or ``("phg", agent_id)``; the id is ``None`` when hashed."""
    _check(fhir_id)
    kind: DeviceKind
    if fhir_id.startswith(_PHD):
        kind, body = "phd", fhir_id[len(_PHD) :]
    elif fhir_id.startswith(_PHG):
        kind, body = "phg", fhir_id[len(_PHG) :]
    else:
        raise InvalidFhirId(fhir_id)
    return kind, (None if body.startswith(_HASHED) else unescape(body))


def parse_observation_fhir_id(fhir_id: str) -> ObservationRef:
    """What an Observation id names; its ``key``/``device_id`` is ``None`` when hashed."""
    _check(fhir_id)
    if fhir_id.startswith(_BATTERY):
        body = fhir_id[len(_BATTERY) :]
        return ObservationRef("battery", device_id=None if body.startswith(_HASHED) else unescape(body))
    kind: ObservationKind
    if fhir_id.startswith(_READING):
        kind, body = "reading", fhir_id[len(_READING) :]
    elif fhir_id.startswith(_PANEL):
        kind, body = "panel", fhir_id[len(_PANEL) :]
    else:
        raise InvalidFhirId(fhir_id)
    return ObservationRef(kind, key=None if body.startswith(_HASHED) else _reading_key(fhir_id, body))


def _reading_key(fhir_id: str, body: str) -> ReadingKey:
    parts = body.split(".", 2)
    if len(parts) != 3 or not all(p.isascii() and p.isdigit() for p in parts[:2]):
        raise InvalidFhirId(fhir_id)
    seq_text, micros_text, agent_text = parts
    if (seq_text != "0" and seq_text.startswith("0")) or (micros_text != "0" and micros_text.startswith("0")):
        raise InvalidFhirId(fhir_id)
    try:
        measured_at = _EPOCH + timedelta(microseconds=int(micros_text))
    except OverflowError:
        raise InvalidFhirId(fhir_id) from None
    return ReadingKey(unescape(agent_text), int(seq_text), measured_at)

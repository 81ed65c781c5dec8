"""Agent status (``.../up/status``): online/offline, devices, outbox depth, alarms.

Sealed in the same envelope as readings (device ids and battery levels identify a household's
equipment). The agent publishes it on connect, on every change and periodically; its MQTT last will
is a sealed status with ``online = false`` prepared at connect time.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any, Final

import cbor2

from rpm_core.checks import aware, boolean, fail, integer, iso_datetime, known_fields, number, optional_text, text
from rpm_core.envelope import ENVELOPE_VERSION, seal_envelope
from rpm_core.ids import AgentId, OrgId
from rpm_core.keys import AgentKeys, ServerPublicKey
from rpm_core.topics import Topic

__all__ = ["ALARMS", "MAX_DEVICES", "AgentStatus", "DeviceStatus", "iso_utc", "seal_status"]

# Conditions an agent raises locally and reports (stable strings; the alert engine keys on them).
ALARMS: Final = frozenset(
    {
        "outbox_overflow",
        "outbox_quarantine",
        "disk_full",
        "clock_skew",
        "ble_adapter_down",
        "broker_unreachable",
        "client_id_takeover",
    }
)
MAX_DEVICES: Final = 64
_TEXT: Final = 128
_SET = object.__setattr__


def iso_utc(t: datetime) -> str:
    """A UTC time as the wire writes it: ISO 8601, microseconds when there are any, ``Z``."""
    return t.isoformat().replace("+00:00", "Z")


def _opt_time(field: str, v: object, *, wire: bool) -> datetime | None:
    if v is None:
        return None
    return iso_datetime(field, v) if wire else aware(field, v)


@dataclass(frozen=True, slots=True)
class DeviceStatus:
    device_id: str
    profile: str
    name: str | None = None
    connected: bool = False
    last_seen: datetime | None = None
    battery_pct: int | None = None
    manufacturer: str | None = None
    model: str | None = None
    serial: str | None = None
    firmware: str | None = None
    clock_skew_s: float | None = None

    def __post_init__(self) -> None:
        self._check("", wire=False)

    def _check(self, at: str, *, wire: bool) -> None:
        text(at + "device_id", self.device_id, min_length=1, max_length=_TEXT)
        text(at + "profile", self.profile, max_length=_TEXT)
        for name in ("name", "manufacturer", "model", "serial", "firmware"):
            optional_text(at + name, getattr(self, name), max_length=_TEXT)
        boolean(at + "connected", self.connected)
        _SET(self, "last_seen", _opt_time(at + "last_seen", self.last_seen, wire=wire))
        if self.battery_pct is not None:
            integer(at + "battery_pct", self.battery_pct, ge=0, le=100)
        if self.clock_skew_s is not None:
            _SET(self, "clock_skew_s", number(at + "clock_skew_s", self.clock_skew_s))

    def to_doc(self) -> dict[str, Any]:
        """The JSON/CBOR document (times as ISO 8601 text), field by field in declaration order."""
        return {
            "device_id": self.device_id,
            "profile": self.profile,
            "name": self.name,
            "connected": self.connected,
            "last_seen": None if self.last_seen is None else iso_utc(self.last_seen),
            "battery_pct": self.battery_pct,
            "manufacturer": self.manufacturer,
            "model": self.model,
            "serial": self.serial,
            "firmware": self.firmware,
            "clock_skew_s": self.clock_skew_s,
        }

    def to_json(self) -> str:
        return json.dumps(self.to_doc(), ensure_ascii=False, separators=(",", ":"))

    @classmethod
    def from_doc(cls, doc: object, *, at: str = "") -> DeviceStatus:
        """From a document (``to_doc``'s shape): unknown keys, wrong types and bad times are refused."""
        values = known_fields(at.rstrip("."), doc, _DEVICE_FIELDS)
        if "device_id" not in values or "profile" not in values:
            fail(at + ("device_id" if "device_id" not in values else "profile"), "missing", "is required")
        status = object.__new__(cls)
        for f in fields(cls):
            _SET(status, f.name, values.get(f.name, f.default))
        status._check(at, wire=True)
        return status

    @classmethod
    def from_json(cls, text_: str | bytes) -> DeviceStatus:
        try:
            doc = json.loads(text_)
        except (ValueError, RecursionError):
            fail("device", "json_invalid", "is not JSON")
        return cls.from_doc(doc)


_DEVICE_FIELDS: Final = frozenset(f.name for f in fields(DeviceStatus))


@dataclass(frozen=True, slots=True)
class AgentStatus:
    org: OrgId
    agent: AgentId
    online: bool
    sent_at: datetime
    agent_version: str = ""
    outbox_depth: int = 0
    outbox_oldest: datetime | None = None
    last_receipt: int = 0
    devices: tuple[DeviceStatus, ...] = ()
    alarms: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        self._check(wire=False)

    def _check(self, *, wire: bool) -> None:
        text("org", self.org)
        text("agent", self.agent)
        boolean("online", self.online)
        sent_at = _opt_time("sent_at", self.sent_at, wire=wire)
        if sent_at is None:
            fail("sent_at", "datetime_type", "must be a date and time")
        _SET(self, "sent_at", sent_at)
        text("agent_version", self.agent_version, max_length=_TEXT)
        integer("outbox_depth", self.outbox_depth, ge=0)
        _SET(self, "outbox_oldest", _opt_time("outbox_oldest", self.outbox_oldest, wire=wire))
        integer("last_receipt", self.last_receipt, ge=0)
        devices = self.devices
        if not isinstance(devices, tuple | list):
            fail("devices", "tuple_type", "must be an array of devices")
        if len(devices) > MAX_DEVICES:
            fail("devices", "too_long", f"must have at most {MAX_DEVICES} devices")
        checked: list[DeviceStatus] = []
        for i, d in enumerate(devices):
            if isinstance(d, DeviceStatus):
                checked.append(d)
            elif wire:
                checked.append(DeviceStatus.from_doc(d, at=f"devices.{i}."))
            else:
                fail(f"devices.{i}", "model_type", "must be a DeviceStatus")
        _SET(self, "devices", tuple(checked))
        alarms = self.alarms
        if not isinstance(alarms, frozenset | set | list | tuple):
            fail("alarms", "frozen_set_type", "must be a set of alarms")
        if not all(isinstance(a, str) for a in alarms):
            fail("alarms", "string_type", "each alarm must be a text")
        unknown = frozenset(alarms) - ALARMS
        if unknown:
            fail("alarms", "value_error", f"{len(unknown)} unknown alarm(s)")  # never the untrusted names
        _SET(self, "alarms", frozenset(alarms))

    def to_doc(self) -> dict[str, Any]:
        """The wire document (what ``_to_wire`` encodes, without the version)."""
        return {
            "org": self.org,
            "agent": self.agent,
            "online": self.online,
            "sent_at": iso_utc(self.sent_at),
            "agent_version": self.agent_version,
            "outbox_depth": self.outbox_depth,
            "outbox_oldest": None if self.outbox_oldest is None else iso_utc(self.outbox_oldest),
            "last_receipt": self.last_receipt,
            "devices": [d.to_doc() for d in self.devices],
            "alarms": list(self.alarms),
        }

    @classmethod
    def from_doc(cls, doc: Mapping[str, Any]) -> AgentStatus:
        """A status opened from the wire (``ingest.opener``): every field checked, unknown keys refused.

        Raises :class:`~rpm_core.errors.InvalidField` (or another ``ContractError``) naming the field.
        """
        values = known_fields("", doc, _AGENT_FIELDS)
        for name in ("org", "agent", "online", "sent_at"):
            if name not in values:
                fail(name, "missing", "is required")
        status = object.__new__(cls)
        for f in fields(cls):
            _SET(status, f.name, values.get(f.name, f.default))
        status._check(wire=True)
        return status


_AGENT_FIELDS: Final = frozenset(f.name for f in fields(AgentStatus))


def _to_wire(status: AgentStatus) -> bytes:
    doc = status.to_doc()
    doc["v"] = ENVELOPE_VERSION
    return cbor2.dumps(doc, canonical=True)


def seal_status(status: AgentStatus, *, agent: AgentKeys, server: ServerPublicKey) -> tuple[Topic, bytes]:
    topic = Topic.status(status.org, status.agent)
    return topic, seal_envelope(_to_wire(status), topic=topic, agent=agent, server=server)

"""Agent status (``.../up/status``): online/offline, devices, outbox depth, alarms.

Sealed in the same envelope as readings (device ids and battery levels identify a household's
equipment). The agent publishes it on connect, on every change and periodically; its MQTT last will
is a sealed status with ``online = false`` prepared at connect time.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Final

import cbor2
from pydantic import BaseModel, ConfigDict, Field, field_validator

from rpm_core.clock import ensure_utc
from rpm_core.envelope import ENVELOPE_VERSION, seal_envelope
from rpm_core.ids import AgentId, OrgId
from rpm_core.keys import AgentKeys, ServerPublicKey
from rpm_core.topics import Topic

__all__ = ["ALARMS", "AgentStatus", "DeviceStatus", "seal_status"]

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
_Text = Annotated[str, Field(max_length=128)]


class DeviceStatus(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", hide_input_in_errors=True)

    device_id: Annotated[str, Field(min_length=1, max_length=128)]
    profile: _Text
    name: _Text | None = None
    connected: bool = False
    last_seen: datetime | None = None
    battery_pct: Annotated[int, Field(ge=0, le=100)] | None = None
    manufacturer: _Text | None = None
    model: _Text | None = None
    serial: _Text | None = None
    firmware: _Text | None = None
    clock_skew_s: float | None = None

    @field_validator("last_seen")
    @classmethod
    def _utc(cls, v: datetime | None) -> datetime | None:
        return None if v is None else ensure_utc(v)


class AgentStatus(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", hide_input_in_errors=True)

    org: OrgId
    agent: AgentId
    online: bool
    sent_at: datetime
    agent_version: _Text = ""
    outbox_depth: Annotated[int, Field(ge=0)] = 0
    outbox_oldest: datetime | None = None
    last_receipt: Annotated[int, Field(ge=0)] = 0
    devices: Annotated[tuple[DeviceStatus, ...], Field(max_length=64)] = ()
    alarms: frozenset[str] = frozenset()

    @field_validator("sent_at", "outbox_oldest")
    @classmethod
    def _utc(cls, v: datetime | None) -> datetime | None:
        return None if v is None else ensure_utc(v)

    @field_validator("alarms")
    @classmethod
    def _known(cls, v: frozenset[str]) -> frozenset[str]:
        unknown = v - ALARMS
        if unknown:
            raise ValueError(f"{len(unknown)} unknown alarm(s)")  # never the untrusted names themselves
        return v


def _to_wire(status: AgentStatus) -> bytes:
    doc = status.model_dump(mode="json")
    doc["v"] = ENVELOPE_VERSION
    return cbor2.dumps(doc, canonical=True)


def seal_status(status: AgentStatus, *, agent: AgentKeys, server: ServerPublicKey) -> tuple[Topic, bytes]:
    topic = Topic.status(status.org, status.agent)
    return topic, seal_envelope(_to_wire(status), topic=topic, agent=agent, server=server)

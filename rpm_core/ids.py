"""Typed identifiers.

Organisation and agent ids appear in MQTT topic levels, broker usernames and certificate common
names, so they are restricted to a safe alphabet (no ``/``, ``+``, ``#``, whitespace). Device ids
are chosen by the agent (a Bluetooth address or System ID) and never appear in a topic. Patient ids
are assigned by the server.
"""

from __future__ import annotations

import re
import secrets
from typing import Final, NewType

from rpm_core.errors import InvalidIdentifier

__all__ = [
    "AgentId",
    "DeviceId",
    "OrgId",
    "PatientId",
    "agent_id",
    "device_id",
    "new_id",
    "org_id",
    "patient_id",
]

OrgId = NewType("OrgId", str)
AgentId = NewType("AgentId", str)
DeviceId = NewType("DeviceId", str)
PatientId = NewType("PatientId", str)

_TOPIC_SAFE: Final = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}")
_DEVICE: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9:_.-]{0,127}")
_PATIENT: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9:_.-]{0,127}")


def _check(kind: str, value: str, pattern: re.Pattern[str]) -> str:
    if not isinstance(value, str) or pattern.fullmatch(value) is None:
        raise InvalidIdentifier(kind, value)  # described, bounded, in the message
    return value


def org_id(value: str) -> OrgId:
    return OrgId(_check("organisation", value, _TOPIC_SAFE))


def agent_id(value: str) -> AgentId:
    return AgentId(_check("agent", value, _TOPIC_SAFE))


def device_id(value: str) -> DeviceId:
    return DeviceId(_check("device", value, _DEVICE))


def patient_id(value: str) -> PatientId:
    return PatientId(_check("patient", value, _PATIENT))


def new_id(prefix: str) -> str:
    """A fresh random id such as ``agt-3f9c2b7d1e6a``: topic-safe, 48 random bits."""
    return f"{prefix}-{secrets.token_hex(6)}"

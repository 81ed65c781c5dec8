"""MQTT topic names: ``vigil/v1/{org}/{agent}/{up|down}/{kind}``.

Agents publish only under their own id (the broker ACL enforces it); the ingest service reads every
agent's uplink through one shared subscription group.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Final

from rpm_core.errors import InvalidIdentifier, TopicError
from rpm_core.ids import AgentId, OrgId, agent_id, org_id

__all__ = [
    "INGEST_GROUP",
    "PREFIX",
    "Direction",
    "Kind",
    "Topic",
    "ingest_subscription",
]

PREFIX: Final = "vigil/v1"
INGEST_GROUP: Final = "ingest"


class Direction(StrEnum):
    UP = "up"
    DOWN = "down"


class Kind(StrEnum):
    READINGS = "readings"
    STATUS = "status"
    RECEIPTS = "receipts"
    CONFIG = "config"

    @property
    def direction(self) -> Direction:
        return Direction.UP if self in (Kind.READINGS, Kind.STATUS) else Direction.DOWN


@dataclass(frozen=True, slots=True)
class Topic:
    org: OrgId
    agent: AgentId
    kind: Kind

    def __str__(self) -> str:
        return f"{PREFIX}/{self.org}/{self.agent}/{self.kind.direction}/{self.kind}"

    @classmethod
    def readings(cls, org: OrgId, agent: AgentId) -> Topic:
        return cls(org, agent, Kind.READINGS)

    @classmethod
    def status(cls, org: OrgId, agent: AgentId) -> Topic:
        return cls(org, agent, Kind.STATUS)

    @classmethod
    def receipts(cls, org: OrgId, agent: AgentId) -> Topic:
        return cls(org, agent, Kind.RECEIPTS)

    @classmethod
    def config(cls, org: OrgId, agent: AgentId) -> Topic:
        return cls(org, agent, Kind.CONFIG)

    @classmethod
    def parse(cls, topic: str) -> Topic:
        parts = topic.split("/")
        if len(parts) != 6 or f"{parts[0]}/{parts[1]}" != PREFIX:
            raise TopicError(topic, f"expected {PREFIX}/{{org}}/{{agent}}/{{up|down}}/{{kind}}")
        try:
            kind = Kind(parts[5])
        except ValueError:
            raise TopicError(topic, f"unknown kind {parts[5][:40]!r}") from None
        if parts[4] != kind.direction:
            raise TopicError(topic, f"{kind} travels {kind.direction}, not {parts[4][:10]!r}")
        try:
            return cls(org_id(parts[2]), agent_id(parts[3]), kind)
        except InvalidIdentifier as exc:
            raise TopicError(topic, f"invalid {exc.kind} id") from exc

    @staticmethod
    def agent_filter(org: OrgId, agent: AgentId, direction: Direction) -> str:
        """The filter an agent's ACL grants: ``vigil/v1/{org}/{agent}/{direction}/#``."""
        return f"{PREFIX}/{org}/{agent}/{direction}/#"


def ingest_subscription(group: str = INGEST_GROUP) -> str:
    """The shared subscription every ingest worker joins."""
    return f"$share/{group}/{PREFIX}/+/+/{Direction.UP}/#"

"""The agent's plug points, as Protocols: production implementations and test doubles both fit.

* :class:`rpm_core.clock.Clock` - time (``SystemClock``; ``ManualClock`` in tests).
* :class:`Outbox` - durable storage of readings until receipted (:class:`edge_agent.outbox.AsyncOutbox`).
* :class:`Publisher` - the MQTT uplink (:class:`edge_agent.mqtt.MqttLink`).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Protocol

from edge_agent.outbox.store import Backlog, Cursor, OutboxStats
from rpm_core.clock import Clock
from rpm_core.reading import Reading, SeqRange
from rpm_core.status import DeviceStatus

__all__ = ["Clock", "Outbox", "Publisher"]


class Outbox(Protocol):
    async def append(self, readings: Sequence[Reading], *, cursor: Cursor | None = None) -> list[int]:
        """Store readings durably; returns their new sequence numbers (their ``seq`` is ignored)."""
        ...

    async def backlog(self, after: int, limit: int) -> Backlog: ...

    async def fetch(self, after: int, limit: int) -> list[Reading]: ...

    async def cursor(self, device_id: str, kind: str) -> int | None: ...

    async def gaps(self) -> tuple[SeqRange, ...]: ...

    async def stats(self) -> OutboxStats: ...

    async def acknowledge(self, through: int, at: datetime) -> int:
        """Delete every reading with ``seq <= through`` (after a verified server receipt)."""
        ...

    async def set_registered(self, at: datetime) -> None:
        """The server accepted the registration; the enrollment token is spent and forgotten."""
        ...

    async def enrollment_token(self) -> str | None:
        """The one-time token to register with, until :meth:`set_registered`."""
        ...

    async def save_state(self, key: str, value: object) -> None: ...

    async def save_devices(self, devices: Sequence[DeviceStatus]) -> None: ...


class Publisher(Protocol):
    """Publishes on the current broker connection; ``generation`` names that connection.

    A message for an older generation is dropped (the uplink re-sends from the outbox after a
    reconnect anyway), so nothing meant for one session leaks into the next.
    """

    def publish(self, topic: str, payload: bytes, *, generation: int) -> None: ...

"""The glucose half of a device session: records taken once, in order, paired with their context.

A record is new when its sequence number comes after the last one taken
(:func:`~edge_agent.devices.racp.sequence_after`: numbers wrap from 65535 to 0); anything else is
counted ``duplicate_record`` and ignored. A new record waits in
:class:`~edge_agent.ble.glucose_records.ContextPairing` while its context is announced and not yet
here, then is stored together with the RACP cursor it advances (exactly once, even across a power
cut). The session calls :meth:`GlucoseIntake.flush` when an RACP procedure ends and when the link
drops, and :meth:`GlucoseIntake.expire` when the ``wake`` callback it gave fires (at the deadline
of the oldest record still waiting).

Counters: ``glucose_context_missing`` (stored without the context it announced),
``glucose_context_unpaired`` (a context matching no waiting record, dropped).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from typing import Final

from edge_agent.ble.glucose_records import ContextPairing, GlucoseRecord
from edge_agent.devices.glucose import GlucoseMeasurement
from edge_agent.devices.glucose_context import GlucoseMeasurementContext
from edge_agent.devices.racp import sequence_after
from edge_agent.devices.reading import DecodedReading
from edge_agent.outbox.store import Cursor
from edge_agent.state import AgentState
from rpm_core.reading import Reading

__all__ = ["GLUCOSE_CURSOR", "GlucoseIntake"]

_log = logging.getLogger(__name__)
GLUCOSE_CURSOR: Final = "glucose"

Convert = Callable[[Sequence[DecodedReading], datetime], list[Reading]]
Store = Callable[[list[Reading], datetime, Cursor], Awaitable[bool]]


class GlucoseIntake:
    """``cursor``: the sequence number of the last record stored (``None``: none yet)."""

    def __init__(
        self,
        address: str,
        *,
        state: AgentState,
        convert: Convert,
        store: Store,
        wake: Callable[[], None],
        timeout: float,
    ) -> None:
        self._address = address
        self._state = state
        self._convert = convert
        self._store = store
        self._wake = wake
        self._pairing = ContextPairing(timeout=timeout)
        self._timer: asyncio.TimerHandle | None = None
        self.cursor: int | None = None

    async def measurement(self, measurement: GlucoseMeasurement, received_at: datetime) -> None:
        latest = self._pairing.last_sequence
        latest = self.cursor if latest is None else latest
        if latest is not None and not sequence_after(measurement.sequence, latest):
            self._state.count("duplicate_record")
            return
        now = asyncio.get_running_loop().time()
        await self._take(self._pairing.measurement(measurement, received_at, now))

    async def context(self, context: GlucoseMeasurementContext) -> None:
        released, paired = self._pairing.context(context)
        if not paired:
            self._state.count("glucose_context_unpaired")
            _log.info("%s: context of record %d matches no waiting record", self._address, context.sequence)
        await self._take(released)

    async def expire(self) -> None:
        await self._take(self._pairing.expire(asyncio.get_running_loop().time()))

    async def flush(self) -> None:
        """No context is coming any more (the RACP procedure or the link ended): store everything."""
        await self._take(self._pairing.flush())

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    async def _take(self, records: Sequence[GlucoseRecord]) -> None:
        self._arm()
        for record in records:
            if record.context_missing:
                self._state.count("glucose_context_missing")
            readings = self._convert(record.readings(), record.received_at)
            if await self._store(readings, record.received_at, Cursor(self._address, GLUCOSE_CURSOR, record.sequence)):
                self.cursor = record.sequence

    def _arm(self) -> None:
        """Wake the session when the oldest record waiting for its context stops waiting."""
        self.close()
        deadline = self._pairing.next_deadline
        if deadline is not None:
            self._timer = asyncio.get_running_loop().call_at(deadline, self._wake)

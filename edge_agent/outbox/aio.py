"""The outbox for asyncio code: every SQLite call runs on one dedicated thread, never on the loop.

SQLite calls block (``fsync`` with ``synchronous=FULL`` takes milliseconds on an SD card), so
:class:`AsyncOutbox` owns a one-thread executor and the :class:`~.store.SqliteOutbox` that lives
on it; calls are serialised in submission order.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import TypeVar

from edge_agent.outbox.store import Backlog, Cursor, OutboxStats, Quarantined, SqliteOutbox
from rpm_core.clock import Clock
from rpm_core.ids import AgentId
from rpm_core.reading import Reading, SeqRange
from rpm_core.status import DeviceStatus

__all__ = ["AsyncOutbox"]

T = TypeVar("T")


class AsyncOutbox:
    """Implements :class:`edge_agent.ports.Outbox` over a :class:`SqliteOutbox`."""

    def __init__(self, store: SqliteOutbox, executor: ThreadPoolExecutor) -> None:
        self._store = store
        self._executor = executor

    @classmethod
    async def open(
        cls, path: Path, *, key: bytes, agent: AgentId, kid: str, clock: Clock, max_readings: int
    ) -> AsyncOutbox:
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="vigil-outbox")
        loop = asyncio.get_running_loop()
        try:
            store = await loop.run_in_executor(
                executor,
                lambda: SqliteOutbox.open(path, key=key, agent=agent, kid=kid, clock=clock, max_readings=max_readings),
            )
        except BaseException:
            executor.shutdown(wait=False)
            raise
        return cls(store, executor)

    async def _run(self, call: Callable[[], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, call)

    async def close(self) -> None:
        await self._run(self._store.close)
        await asyncio.to_thread(self._executor.shutdown, wait=True)

    async def append(self, readings: Sequence[Reading], *, cursor: Cursor | None = None) -> list[int]:
        return await self._run(lambda: self._store.append(readings, cursor=cursor))

    async def backlog(self, after: int, limit: int) -> Backlog:
        return await self._run(lambda: self._store.backlog(after, limit))

    async def fetch(self, after: int, limit: int) -> list[Reading]:
        return await self._run(lambda: self._store.fetch(after, limit))

    async def cursor(self, device_id: str, kind: str) -> int | None:
        return await self._run(lambda: self._store.cursor(device_id, kind))

    async def gaps(self) -> tuple[SeqRange, ...]:
        return await self._run(self._store.gaps)

    async def quarantined(self) -> tuple[Quarantined, ...]:
        return await self._run(self._store.quarantined)

    async def stats(self) -> OutboxStats:
        return await self._run(self._store.stats)

    async def acknowledge(self, through: int, at: datetime) -> int:
        return await self._run(lambda: self._store.acknowledge(through, at))

    async def set_registered(self, at: datetime) -> None:
        await self._run(lambda: self._store.set_registered(at))

    async def enrollment_token(self) -> str | None:
        return await self._run(self._store.enrollment_token)

    async def save_state(self, key: str, value: object) -> None:
        await self._run(lambda: self._store.save_state(key, value))

    async def save_devices(self, devices: Sequence[DeviceStatus]) -> None:
        await self._run(lambda: self._store.save_devices(devices))

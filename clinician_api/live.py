"""Live alert updates: one LISTEN per process, fanned out to the open streams.

:class:`AlertHub` runs one listener (``store.channels.alert_notices``) in the app's lifespan and hands
each notice to the subscribers whose organisation and panel hold the alert's patient. A subscriber
that does not keep up (its queue is full) is dropped with an overflow marker; the stream ends and
the browser's EventSource reconnects and refetches. When the database connection is lost, every
subscriber gets a ``resync`` marker (notices sent meanwhile are lost) and the hub reconnects with
backoff. No client ever polls the alerts table.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Final, Literal

from rpm_core.backoff import BackoffPolicy, backoff_delay
from store.channels import AlertNotice, alert_notices
from store.errors import DatabaseUnavailable

__all__ = ["AlertHub", "Marker", "Subscription"]

log = logging.getLogger(__name__)

Marker = Literal["resync", "overflow"]
_QUEUE: Final = 256
_POLICY: Final = BackoffPolicy(base_s=0.5, cap_s=30.0)


@dataclass(eq=False)
class Subscription:
    org_id: str
    patient_ids: frozenset[str]
    queue: asyncio.Queue[AlertNotice | Marker] = field(default_factory=lambda: asyncio.Queue(_QUEUE))
    dropped: bool = False


class AlertHub:
    def __init__(self, url: str) -> None:
        self._url = url
        self._subs: set[Subscription] = set()
        self.ready = asyncio.Event()
        self.delivered = 0

    @contextmanager
    def subscribe(self, org_id: str, patient_ids: frozenset[str]) -> Iterator[Subscription]:
        sub = Subscription(org_id, patient_ids)
        self._subs.add(sub)
        try:
            yield sub
        finally:
            self._subs.discard(sub)

    @property
    def subscribers(self) -> int:
        return len(self._subs)

    def publish(self, notice: AlertNotice) -> None:
        for sub in list(self._subs):
            if sub.dropped or sub.org_id != notice.org_id or notice.patient_id not in sub.patient_ids:
                continue
            try:
                sub.queue.put_nowait(notice)
                self.delivered += 1
            except asyncio.QueueFull:
                self._drop(sub, "overflow")

    def _drop(self, sub: Subscription, marker: Marker) -> None:
        if marker == "overflow":
            sub.dropped = True
        while sub.queue.full():  # make room for the marker: the stream ends or refetches anyway
            sub.queue.get_nowait()
        sub.queue.put_nowait(marker)

    async def run(self) -> None:
        """Listen until cancelled, reconnecting after a lost connection."""
        attempt = 0
        while True:
            try:
                async for notice in alert_notices(self._url):
                    if notice is None:
                        attempt = 0
                        self.ready.set()
                        continue
                    self.publish(notice)
                raise DatabaseUnavailable("the notification connection closed")  # noqa: TRY301
            except DatabaseUnavailable as exc:
                self.ready.clear()
                for sub in list(self._subs):
                    self._drop(sub, "resync")
                delay = backoff_delay(exc, attempt, policy=_POLICY, jitter=random.random() * 0.5)  # noqa: S311
                log.warning("alert listener lost its connection; retrying in %.1fs", delay)
                attempt += 1
                await asyncio.sleep(delay)

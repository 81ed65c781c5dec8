"""Live updates: one LISTEN per process, fanned out to the open streams.

:class:`FanoutHub` is the machinery every live channel shares: one listener in the app's lifespan,
a bounded queue per subscriber, and the two markers. A subscriber that does not keep up (its queue
is full) is dropped with ``overflow``; the stream ends and the browser's EventSource reconnects and
refetches. When the database connection is lost every subscriber gets ``resync`` (notices sent
meanwhile are lost) and the hub reconnects with backoff. No client ever polls a table.

:class:`AlertHub` (``store.channels.alert_notices``) hands each alert notice to the subscribers
whose organisation and panel hold the alert's patient; ``clinician_api.messaging_live.MessageHub``
follows message threads the same way.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import AsyncIterator, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from typing import Final, Generic, Literal, Protocol, TypeVar

from rpm_core.backoff import BackoffPolicy, backoff_delay
from store.channels import AlertNotice, alert_notices
from store.errors import DatabaseUnavailable

__all__ = ["AlertHub", "FanoutHub", "Marker", "Subscription"]

log = logging.getLogger(__name__)

Marker = Literal["resync", "overflow"]
_QUEUE: Final = 256
_POLICY: Final = BackoffPolicy(base_s=0.5, cap_s=30.0)


class Stream(Protocol):
    """What the hub needs of a subscription: its queue and whether it was dropped."""

    queue: asyncio.Queue[object]
    dropped: bool


N = TypeVar("N")
S = TypeVar("S")


class FanoutHub(Generic[N, S]):
    """One listener, many bounded subscriber queues (see the module docstring).

    Subclasses say where notices come from (:meth:`notices`, yielding None once the LISTEN is in
    place) and which subscriber takes which notice (:meth:`accepts`)."""

    what = "notice"  # for the log

    def __init__(self, url: str) -> None:
        self._url = url
        self._subs: set[S] = set()
        self.ready = asyncio.Event()
        self.delivered = 0

    @contextmanager
    def _subscribed(self, sub: S) -> Iterator[S]:
        self._subs.add(sub)
        try:
            yield sub
        finally:
            self._subs.discard(sub)

    @property
    def subscribers(self) -> int:
        return len(self._subs)

    def notices(self) -> AsyncIterator[N | None]:
        raise NotImplementedError

    def accepts(self, sub: S, notice: N) -> bool:
        raise NotImplementedError

    def publish(self, notice: N) -> None:
        for sub in list(self._subs):
            stream: Stream = sub  # type: ignore[assignment]  # every S is a Stream
            if stream.dropped or not self.accepts(sub, notice):
                continue
            try:
                stream.queue.put_nowait(notice)
                self.delivered += 1
            except asyncio.QueueFull:
                self._drop(stream, "overflow")

    @staticmethod
    def _drop(sub: Stream, marker: Marker) -> None:
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
                async for notice in self.notices():
                    if notice is None:
                        attempt = 0
                        self.ready.set()
                        continue
                    self.publish(notice)
                raise DatabaseUnavailable("the notification connection closed")  # noqa: TRY301
            except DatabaseUnavailable as exc:
                self.ready.clear()
                for sub in list(self._subs):
                    self._drop(sub, "resync")  # type: ignore[arg-type]  # every S is a Stream
                delay = backoff_delay(exc, attempt, policy=_POLICY, jitter=random.random() * 0.5)  # noqa: S311
                log.warning("%s listener lost its connection; retrying in %.1fs", self.what, delay)
                attempt += 1
                await asyncio.sleep(delay)


@dataclass(eq=False)
class Subscription:
    org_id: str
    patient_ids: frozenset[str]
    queue: asyncio.Queue[AlertNotice | Marker] = field(default_factory=lambda: asyncio.Queue(_QUEUE))
    dropped: bool = False


class AlertHub(FanoutHub[AlertNotice, Subscription]):
    what = "alert"

    def subscribe(self, org_id: str, patient_ids: frozenset[str]) -> AbstractContextManager[Subscription]:
        return self._subscribed(Subscription(org_id, patient_ids))

    def notices(self) -> AsyncIterator[AlertNotice | None]:
        return alert_notices(self._url)

    def accepts(self, sub: Subscription, notice: AlertNotice) -> bool:
        return sub.org_id == notice.org_id and notice.patient_id in sub.patient_ids

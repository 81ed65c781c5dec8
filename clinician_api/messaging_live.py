"""Live message updates: one LISTEN per process (``store.channels``), fanned out to the open
message streams of the participants.

A subscription follows the threads its user took part in when it opened, plus threads the user is
added to while it is open (a participant notice naming them); a removal stops it following that
thread. Notices carry ids only; the page fetches the messages through the audited routes, which
check participation again. A subscriber that does not keep up gets ``overflow`` and is dropped; a
lost database connection sends every subscriber ``resync`` and the hub reconnects with backoff.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Final, Literal

from rpm_core.backoff import BackoffPolicy, backoff_delay
from store.channels import MessageNotice, message_notices
from store.errors import DatabaseUnavailable

__all__ = ["MessageHub", "MessageMarker", "MessageSubscription"]

log = logging.getLogger(__name__)

MessageMarker = Literal["resync", "overflow"]
_QUEUE: Final = 256
_POLICY: Final = BackoffPolicy(base_s=0.5, cap_s=30.0)


@dataclass(eq=False)
class MessageSubscription:
    org_id: str
    user_id: str
    thread_ids: set[str]
    queue: asyncio.Queue[MessageNotice | MessageMarker] = field(default_factory=lambda: asyncio.Queue(_QUEUE))
    dropped: bool = False


class MessageHub:
    def __init__(self, url: str) -> None:
        self._url = url
        self._subs: set[MessageSubscription] = set()
        self.ready = asyncio.Event()
        self.delivered = 0

    @contextmanager
    def subscribe(self, org_id: str, user_id: str, thread_ids: Iterable[str]) -> Iterator[MessageSubscription]:
        sub = MessageSubscription(org_id, user_id, set(thread_ids))
        self._subs.add(sub)
        try:
            yield sub
        finally:
            self._subs.discard(sub)

    @property
    def subscribers(self) -> int:
        return len(self._subs)

    def publish(self, notice: MessageNotice) -> None:
        for sub in list(self._subs):
            if sub.dropped or sub.org_id != notice.org_id:
                continue
            if notice.kind == "p" and notice.user_id == sub.user_id:
                if notice.active:
                    sub.thread_ids.add(notice.thread_id)
                else:
                    sub.thread_ids.discard(notice.thread_id)
            elif notice.thread_id not in sub.thread_ids:
                continue
            try:
                sub.queue.put_nowait(notice)
                self.delivered += 1
            except asyncio.QueueFull:
                self._drop(sub, "overflow")

    def _drop(self, sub: MessageSubscription, marker: MessageMarker) -> None:
        if marker == "overflow":
            sub.dropped = True
        while sub.queue.full():
            sub.queue.get_nowait()
        sub.queue.put_nowait(marker)

    async def run(self) -> None:
        """Listen until cancelled, reconnecting after a lost connection."""
        attempt = 0
        while True:
            try:
                async for notice in message_notices(self._url):
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
                log.warning("message listener lost its connection; retrying in %.1fs", delay)
                attempt += 1
                await asyncio.sleep(delay)

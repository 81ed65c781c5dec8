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
from collections.abc import AsyncIterator, Iterable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Final

from clinician_api.live import FanoutHub, Marker
from store.channels import MessageNotice, message_notices

__all__ = ["MessageHub", "MessageMarker", "MessageSubscription"]

MessageMarker = Marker
_QUEUE: Final = 256


@dataclass(eq=False)
class MessageSubscription:
    org_id: str
    user_id: str
    thread_ids: set[str]
    queue: asyncio.Queue[MessageNotice | MessageMarker] = field(default_factory=lambda: asyncio.Queue(_QUEUE))
    dropped: bool = False


class MessageHub(FanoutHub[MessageNotice, MessageSubscription]):
    what = "message"

    def subscribe(
        self, org_id: str, user_id: str, thread_ids: Iterable[str]
    ) -> AbstractContextManager[MessageSubscription]:
        return self._subscribed(MessageSubscription(org_id, user_id, set(thread_ids)))

    def notices(self) -> AsyncIterator[MessageNotice | None]:
        return message_notices(self._url)

    def accepts(self, sub: MessageSubscription, notice: MessageNotice) -> bool:
        if sub.org_id != notice.org_id:
            return False
        if notice.kind == "p" and notice.user_id == sub.user_id:
            # Added to a thread while the stream is open: follow it from now on; removed: stop.
            if notice.active:
                sub.thread_ids.add(notice.thread_id)
            else:
                sub.thread_ids.discard(notice.thread_id)
            return True
        return notice.thread_id in sub.thread_ids

"""PUBACK ordering: acknowledge only the unbroken prefix of committed messages, per connection.

MQTT requires PUBACKs in the order the PUBLISH packets arrived, and paho's packet ids restart on
every connection, so an ``ack(mid)`` after a reconnect could acknowledge a *different* message
that reused the id. :class:`AckTracker` is the pure bookkeeping (no I/O, no threads):

* :meth:`connected` starts a new generation; everything tracked for older ones is forgotten.
* :meth:`arrived` registers a message in arrival order (and when it arrived, for the age of the
  oldest unacknowledged message, :attr:`oldest_arrival`) and returns its :class:`AckToken`.
* :meth:`done` marks tokens committed (or dead-lettered) and returns the packet ids that may be
  acknowledged now: the longest prefix, in arrival order, whose messages are all done. Tokens of
  an older generation are dropped: the broker will redeliver those messages, and the idempotent
  insert absorbs them.

The caller serialises access (the service holds one lock around it).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass

__all__ = ["AckToken", "AckTracker"]


@dataclass(frozen=True, slots=True)
class AckToken:
    generation: int
    serial: int
    mid: int


class AckTracker:
    def __init__(self) -> None:
        self._generation = 0
        self._next = 0
        self._order: deque[AckToken] = deque()
        self._times: deque[float] = deque()  # arrival time of each token in _order
        self._done: set[int] = set()

    @property
    def generation(self) -> int:
        return self._generation

    @property
    def outstanding(self) -> int:
        """Messages of the current connection not yet acknowledged."""
        return len(self._order)

    @property
    def oldest_arrival(self) -> float | None:
        """When the oldest message not yet acknowledged arrived (the caller's clock); None: none."""
        return self._times[0] if self._times else None

    def connected(self) -> int:
        self._generation += 1
        self._order.clear()
        self._times.clear()
        self._done.clear()
        return self._generation

    def arrived(self, mid: int, at: float = 0.0) -> AckToken:
        token = AckToken(self._generation, self._next, mid)
        self._next += 1
        self._order.append(token)
        self._times.append(at)
        return token

    def done(self, tokens: Iterable[AckToken]) -> list[int]:
        for t in tokens:
            if t.generation == self._generation:
                self._done.add(t.serial)
        ready: list[int] = []
        while self._order and self._order[0].serial in self._done:
            head = self._order.popleft()
            self._times.popleft()
            self._done.discard(head.serial)
            ready.append(head.mid)
        return ready

"""Noticing that another client uses our MQTT client id, when the broker does not say so.

MQTT 5 brokers should end the displaced session with DISCONNECT 0x8E (session taken over):
Mosquitto does from 2.0.18 on. Mosquitto 2.0.11 (Debian 12) just closes the old connection and
logs "Client X already connected, closing old connection": the displaced client sees the TCP/TLS
connection end, exactly as on a network fault. Two clients with one id (a cloned agent, two ingest
workers given the same ``--client-id``) then displace each other in turn, each reconnecting at
once: a ping-pong of sessions that the broker *accepted* and then *cut* within seconds.

:class:`TakeoverDetector` is the pure rule both the edge agent and ingest apply to their sessions:

* a session *cut* = the broker accepted it (CONNACK success) and the connection then ended
  without a DISCONNECT packet and not by our own doing (no keepalive timeout, no stop);
* ``threshold`` cuts in a row, each ``short_s`` or less after its CONNACK, the first and the last
  within ``window_s``, mean a takeover;
* any other ending (a longer session, a DISCONNECT with a reason, a refused or failed connection
  attempt) starts the count again; so does a reported takeover.

A broker that crash-loops while accepting connections would look the same: the alarm says
"suspected" for that reason. A DISCONNECT 0x8E is a takeover at once (:meth:`taken_over`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

__all__ = ["SESSION_TAKEN_OVER", "TakeoverDetector"]

SESSION_TAKEN_OVER: Final = 0x8E  # MQTT 5 reason code of a DISCONNECT or CONNACK


@dataclass
class TakeoverDetector:
    threshold: int = 3
    short_s: float = 30.0
    window_s: float = 180.0
    _accepted_at: float | None = field(default=None, init=False)
    _cuts: list[float] = field(default_factory=list, init=False)

    def __post_init__(self) -> None:
        if self.threshold < 2 or self.short_s <= 0 or self.window_s < self.short_s:
            raise ValueError("need threshold >= 2 and 0 < short_s <= window_s")

    def accepted(self, at: float) -> None:
        """The broker accepted a connection (CONNACK success) at monotonic time ``at``."""
        self._accepted_at = at

    def failed(self) -> None:
        """A connection attempt failed or was refused: whatever goes on, it is not a twin's ping-pong."""
        self._accepted_at = None
        self._cuts.clear()

    def ended(self, at: float, *, cut: bool) -> bool:
        """An accepted session ended at ``at``; ``cut``: closed by the peer without a DISCONNECT.

        True when this ending completes the pattern of a takeover (the count then starts again).
        """
        started, self._accepted_at = self._accepted_at, None
        if started is None or not cut or at - started > self.short_s:
            self._cuts.clear()
            return False
        self._cuts = [t for t in self._cuts if at - t <= self.window_s]
        self._cuts.append(at)
        if len(self._cuts) >= self.threshold:
            self._cuts.clear()
            return True
        return False

    def taken_over(self) -> bool:
        """The broker said so (DISCONNECT 0x8E): a takeover, and the count starts again."""
        self._accepted_at = None
        self._cuts.clear()
        return True

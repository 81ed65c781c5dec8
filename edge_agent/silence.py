"""Bounding how long the agent trusts a silent connection (catalogue 8: a half-open uplink).

When the path to the broker goes silent without a RST or FIN (a NAT forgets the flow, a cellular
link drops), paho notices only when a PINGRESP is a whole keepalive late: it pings once nothing
was received for one keepalive and gives up one keepalive after that ping, so up to 2 x keepalive
after the cut (measured: 8.8 s at a 5 s keepalive, readings publishing into a socket nobody
reads). The agent therefore runs paho's keepalive at 3/4 of ``mqtt_keepalive_s``: the connection
is given up within 2 x 3/4 = 1.5 x keepalive of the cut, the bound the broker applies to clients.
The broker sees the shorter value in CONNECT, so it too drops a silent agent sooner (after 1.5 x
3/4 of the setting) and publishes its will; a live agent pings often enough never to be dropped.

(``TCP_USER_TIMEOUT`` at half the keepalive would bound it in the kernel, but Linux also aborts a
connection whose peer advertises a zero window for that long, which a busy broker draining a
backlog can do; this bound uses paho's own public keepalive and nothing else.)
"""

from __future__ import annotations

__all__ = ["ping_interval"]


def ping_interval(keepalive_s: int) -> int:
    """The keepalive given to paho (and the broker) for a configured ``keepalive_s``: 3/4 of it."""
    return max(1, keepalive_s * 3 // 4)

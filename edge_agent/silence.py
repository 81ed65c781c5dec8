"""Bounding how long the agent trusts a silent connection (catalogue 8: a half-open uplink).

When the path to the broker goes silent without a RST or FIN (a NAT forgets the flow, a cellular
link drops), paho notices only when a PINGRESP is a whole keepalive late: up to 2 x keepalive
after the cut, while readings pile up in a socket nobody reads. The kernel can do better: with
``TCP_USER_TIMEOUT`` (RFC 5482, Linux) a connection whose sent bytes stay unacknowledged for that
long is aborted. Set to half the keepalive, the next publish or PINGREQ into a dead path ends the
session within 1.5 x keepalive of the cut, the same bound the broker applies to the agent. On a
lossy but live path a segment would have to be lost again and again for half a keepalive (at
least 2.5 s) before this fires; then the agent reconnects and resends, which the server absorbs.
"""

from __future__ import annotations

import contextlib
import socket
from typing import Protocol

__all__ = ["bound_silence", "user_timeout_ms"]


class _Settable(Protocol):
    def setsockopt(self, level: int, option: int, value: int, /) -> None: ...


def user_timeout_ms(keepalive_s: float) -> int:
    """Half the keepalive, in milliseconds."""
    return max(1, int(keepalive_s * 500))


def bound_silence(sock: object, keepalive_s: float) -> bool:
    """Set ``TCP_USER_TIMEOUT`` on a connected socket (TLS or not); False where the platform lacks it."""
    option = getattr(socket, "TCP_USER_TIMEOUT", None)
    if option is None or not hasattr(sock, "setsockopt"):
        return False
    settable: _Settable = sock
    with contextlib.suppress(OSError):
        settable.setsockopt(socket.IPPROTO_TCP, option, user_timeout_ms(keepalive_s))
        return True
    return False

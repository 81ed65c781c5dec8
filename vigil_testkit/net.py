"""Ports and waiting for services."""

from __future__ import annotations

import random
import socket
import time
from pathlib import Path
from typing import Final

_LOWEST: Final = 10_000


def _ephemeral_range() -> tuple[int, int]:
    try:
        lo, hi = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(lo), int(hi)
    except (OSError, ValueError):
        return 32768, 60999  # Linux's default


def free_port() -> int:
    """A free TCP port on 127.0.0.1 for a server, below the kernel's ephemeral range.

    A port the kernel hands out (bind to 0) is in the range it also gives outgoing connections:
    while the server on it is down (a broker-outage test), a client reconnecting to it can be
    given that very port as its source and connect to itself (TCP simultaneous open), which
    then fails the TLS handshake against itself (paho leaked that socket and the test failed on
    the ResourceWarning). A port below the range is never anyone's source port."""
    lo, _hi = _ephemeral_range()
    rng = random.SystemRandom()
    if lo - _LOWEST > 100:
        for _ in range(200):
            port = rng.randrange(_LOWEST, lo)
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
                try:
                    s.bind(("127.0.0.1", port))
                except OSError:
                    continue
                return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        chosen: int = s.getsockname()[1]
        return chosen


def wait_for_port(host: str, port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise TimeoutError(f"nothing listens on {host}:{port} after {timeout}s") from None
            time.sleep(0.05)

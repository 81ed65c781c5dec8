"""free_port gives servers ports that no outgoing connection can be given as its source."""

from __future__ import annotations

import socket

from vigil_testkit.net import _ephemeral_range, free_port


def test_ports_are_free_and_below_the_ephemeral_range() -> None:
    lo, _hi = _ephemeral_range()
    ports = {free_port() for _ in range(20)}
    assert all(p < lo for p in ports)
    assert len(ports) > 1  # chosen at random, not one fixed port
    for port in ports:
        with socket.socket() as s:
            s.bind(("127.0.0.1", port))  # free: a server can take it

"""Fixtures shared across test packages (registered by the root conftest through ``pytest_plugins``).

- ``broker``: the project's TLS + dynamic-security Mosquitto (:func:`vigil_testkit.broker.start_secure_broker`),
  already answering MQTT through verified TLS when the test gets it, stopped afterwards;
- ``server_key``: a fresh server key generation (what ``vigil agents keys init`` makes), for tests
  that seal to, or receipt as, the server.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from rpm_core.keys import ServerKey
from vigil_testkit.broker import SecureBroker, start_secure_broker


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[SecureBroker]:
    b = start_secure_broker(tmp_path / "broker")
    try:
        yield b
    finally:
        b.stop()


@pytest.fixture
def server_key() -> ServerKey:
    return ServerKey.generate()

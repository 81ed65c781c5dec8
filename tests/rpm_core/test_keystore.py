from __future__ import annotations

import stat
from pathlib import Path

import pytest

from rpm_core.errors import ConfigError
from rpm_core.keystore import create_server_key, load_server_keys, retire_server_keys


def test_generations_rotate_and_retire(tmp_path: Path) -> None:
    with pytest.raises(ConfigError):
        load_server_keys(tmp_path)
    assert create_server_key(tmp_path) == 1
    first = load_server_keys(tmp_path).current
    assert create_server_key(tmp_path) == 2
    ring = load_server_keys(tmp_path)
    assert ring.current.kid != first.kid
    assert set(ring.by_kid) == {first.kid, ring.current.kid}
    assert ring.public_keys()[0] == ring.current.public()
    for pem in (tmp_path / "server").rglob("*.pem"):
        assert stat.S_IMODE(pem.stat().st_mode) == 0o600
    assert retire_server_keys(tmp_path, keep=1) == [1]
    assert set(load_server_keys(tmp_path).by_kid) == {ring.current.kid}
    with pytest.raises(ConfigError):
        retire_server_keys(tmp_path, keep=0)

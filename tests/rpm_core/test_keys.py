from __future__ import annotations

import pytest

from rpm_core.errors import ConfigError
from rpm_core.keys import AgentKeys, AgentPublicKeys, ServerKey, kid_of


def test_agent_keys_survive_pem_round_trip() -> None:
    keys = AgentKeys.generate()
    again = AgentKeys.from_pem(keys.sign_pem(), keys.kex_pem())
    assert again.public() == keys.public()


def test_server_key_pem_round_trip_and_kid() -> None:
    key = ServerKey.generate()
    again = ServerKey.from_pem(key.kex_pem(), key.sign_pem())
    assert again.kid == key.kid == kid_of(key.public().kex)
    assert len(key.kid) == 16


def test_swapped_pem_files_are_a_config_error() -> None:
    keys = AgentKeys.generate()
    with pytest.raises(ConfigError):
        AgentKeys.from_pem(keys.kex_pem(), keys.sign_pem())
    with pytest.raises(ConfigError):
        AgentKeys.from_pem(b"not a key", keys.kex_pem())


def test_public_keys_must_be_raw_32_bytes() -> None:
    with pytest.raises(ConfigError):
        AgentPublicKeys(sign=b"x" * 31, kex=b"y" * 32)


def test_signature_verification() -> None:
    keys = AgentKeys.generate()
    sig = keys.sign.sign(b"hello")
    assert keys.public().verify(sig, b"hello")
    assert not keys.public().verify(sig, b"hellO")

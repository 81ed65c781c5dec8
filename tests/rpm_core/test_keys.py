from __future__ import annotations

import base64
import re
import shutil
import subprocess

import pytest
from cryptography.hazmat.primitives import serialization as ser
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed448 import Ed448PrivateKey
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey as CEd25519
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey as CX25519
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PublicKey as CX25519Public
from hypothesis import given, settings
from hypothesis import strategies as st

from rpm_core.errors import ConfigError
from rpm_core.keys import (
    AgentKeys,
    AgentPublicKeys,
    Ed25519Key,
    ServerKey,
    X25519Key,
    kid_of,
    load_private_pem,
    verify_ed25519,
)


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


# -- libsodium against cryptography (OpenSSL): the same keys, files, signatures and secrets --------

_NONE = ser.NoEncryption()


def _their_pem(key: PrivateKeyTypes) -> bytes:
    return key.private_bytes(ser.Encoding.PEM, ser.PrivateFormat.PKCS8, _NONE)


@settings(max_examples=40, deadline=None)
@given(seed=st.binary(min_size=32, max_size=32), private=st.binary(min_size=32, max_size=32))
def test_pem_files_are_cryptographys_both_ways(seed: bytes, private: bytes) -> None:
    theirs_sign, theirs_kex = CEd25519.from_private_bytes(seed), CX25519.from_private_bytes(private)
    ours = AgentKeys(Ed25519Key(seed), X25519Key(private))
    # What we write is byte for byte what cryptography writes, and it reads it back.
    assert ours.sign_pem() == _their_pem(theirs_sign)
    assert ours.kex_pem() == _their_pem(theirs_kex)
    back = ser.load_pem_private_key(ours.sign_pem(), password=None)
    assert isinstance(back, CEd25519)
    assert back.private_bytes_raw() == seed
    # What cryptography wrote (every key file an agent has today) loads as the same keys.
    loaded = AgentKeys.from_pem(_their_pem(theirs_sign), _their_pem(theirs_kex))
    assert loaded.sign.private_bytes_raw() == seed
    assert loaded.kex.private_bytes_raw() == private
    assert loaded.public() == AgentPublicKeys(
        sign=theirs_sign.public_key().public_bytes_raw(), kex=theirs_kex.public_key().public_bytes_raw()
    )
    assert loaded.sign.sign(b"message") == theirs_sign.sign(b"message")  # Ed25519 is deterministic
    other = CX25519.generate()
    assert loaded.kex.exchange(other.public_key().public_bytes_raw()) == theirs_kex.exchange(other.public_key())


def test_pem_with_crlf_and_surrounding_blank_lines_loads() -> None:
    keys = AgentKeys.generate()
    pem = b"\n" + keys.sign_pem().replace(b"\n", b"\r\n") + b"\n\n"
    assert load_private_pem(pem).private_bytes_raw() == keys.sign.private_bytes_raw()


def test_exchange_remembers_only_the_right_peer() -> None:
    ours = X25519Key.generate()
    theirs = CX25519.from_private_bytes(ours.private_bytes_raw())
    peers = [CX25519.generate().public_key() for _ in range(2)]
    for peer in (*peers, peers[0], peers[0], peers[1]):
        assert ours.exchange(peer.public_bytes_raw()) == theirs.exchange(peer)
    with pytest.raises(ValueError, match="no shared secret"):
        ours.exchange(bytes(32))
    assert ours.exchange(peers[1].public_bytes_raw()) == theirs.exchange(peers[1])


def test_low_order_public_key_has_no_shared_secret() -> None:
    key = X25519Key.generate()
    for point in (bytes(32), (1).to_bytes(32, "little")):
        with pytest.raises(ValueError, match="no shared secret"):
            key.exchange(point)
        with pytest.raises(ValueError):  # OpenSSL refuses the same
            CX25519.from_private_bytes(key.private_bytes_raw()).exchange(CX25519Public.from_public_bytes(point))
    with pytest.raises(ValueError, match="32 raw bytes"):
        key.exchange(b"\x09" * 31)


def test_raw_keys_must_be_32_bytes_and_never_print() -> None:
    for bad in (b"", b"x" * 31, b"x" * 33):
        with pytest.raises(ValueError, match="32 raw bytes"):
            Ed25519Key(bad)
        with pytest.raises(ValueError, match="32 raw bytes"):
            X25519Key(bad)
    key = Ed25519Key(bytes(range(32)))
    assert bytes(range(32)).hex() not in repr(key)
    assert "kid=" in repr(key)


def test_verification_rejects_a_wrong_length_signature() -> None:
    keys = AgentKeys.generate()
    sig = keys.sign.sign(b"hello")
    assert verify_ed25519(keys.public().sign, sig, b"hello")
    assert not keys.public().verify(sig[:63], b"hello")
    assert not keys.public().verify(sig + b"\x00", b"hello")
    assert not keys.public().verify(b"", b"hello")


def _pem_of(der: bytes, label: str = "PRIVATE KEY") -> bytes:
    body = base64.encodebytes(der).decode()
    return f"-----BEGIN {label}-----\n{body}-----END {label}-----\n".encode()


_ED_DER = bytes.fromhex("302e020100300506032b657004220420") + bytes(range(32))


@pytest.mark.parametrize(
    ("data", "message"),
    [
        pytest.param(b"", "not a PEM private key", id="empty"),
        pytest.param(b"\xff\xfe key", "not ASCII", id="binary"),
        pytest.param(_ED_DER, "not a PEM private key", id="der-not-pem"),
        pytest.param(_pem_of(_ED_DER, "PUBLIC KEY"), "found 'PUBLIC KEY'", id="label-public"),
        pytest.param(_pem_of(_ED_DER, "EC PRIVATE KEY"), "found 'EC PRIVATE KEY'", id="label-ec"),
        pytest.param(_pem_of(_ED_DER, "OPENSSH PRIVATE KEY"), "found 'OPENSSH PRIVATE KEY'", id="label-openssh"),
        pytest.param(_pem_of(_ED_DER)[:-26], "no END line", id="no-end-line"),
        pytest.param(_pem_of(_ED_DER)[:28], "no END line", id="begin-line-only"),
        pytest.param(_pem_of(_ED_DER).replace(b"MC4", b"M*4"), "not valid base64", id="bad-base64"),
        pytest.param(_pem_of(_ED_DER) * 2, "not valid base64", id="two-keys"),
        pytest.param(_pem_of(_ED_DER[:-1]), "only unencrypted PKCS#8 Ed25519 and X25519", id="truncated"),
        pytest.param(_pem_of(_ED_DER[:16]), "only unencrypted PKCS#8 Ed25519 and X25519", id="no-key-bytes"),
        pytest.param(_pem_of(_ED_DER + b"\x00"), "only unencrypted PKCS#8 Ed25519 and X25519", id="extra-byte"),
        pytest.param(
            _pem_of(_ED_DER.replace(bytes.fromhex("2b6570"), bytes.fromhex("2b6571"))),  # Ed448's OID
            "only unencrypted PKCS#8 Ed25519 and X25519",
            id="wrong-oid",
        ),
        pytest.param(
            _pem_of(bytes.fromhex("302e020101") + _ED_DER[5:]),  # version 1 (v2, OneAsymmetricKey)
            "only unencrypted PKCS#8 Ed25519 and X25519",
            id="wrong-version",
        ),
        pytest.param(
            _pem_of(  # RFC 8410 section 10.3: a v2 key carrying its public key
                bytes.fromhex("3051020101300506032b657004220420")
                + bytes(range(32))
                + bytes.fromhex("812100")
                + Ed25519Key(bytes(range(32))).public_bytes_raw()
            ),
            "only unencrypted PKCS#8 Ed25519 and X25519",
            id="with-public-key",
        ),
    ],
)
def test_hostile_key_files_are_config_errors(data: bytes, message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_private_pem(data)


def test_keys_cryptography_writes_but_we_do_not_read_are_config_errors() -> None:
    encrypted = CEd25519.generate().private_bytes(
        ser.Encoding.PEM, ser.PrivateFormat.PKCS8, ser.BestAvailableEncryption(b"pw")
    )
    with pytest.raises(ConfigError, match="encrypted private keys are not supported"):
        load_private_pem(encrypted)
    traditional = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        ser.Encoding.PEM, ser.PrivateFormat.TraditionalOpenSSL, _NONE
    )
    with pytest.raises(ConfigError, match="found 'EC PRIVATE KEY'"):
        load_private_pem(traditional)
    p256 = _their_pem(ec.generate_private_key(ec.SECP256R1()))
    with pytest.raises(ConfigError, match="only unencrypted PKCS#8 Ed25519 and X25519"):
        load_private_pem(p256)
    ed448 = Ed448PrivateKey.generate().private_bytes(ser.Encoding.PEM, ser.PrivateFormat.PKCS8, _NONE)
    with pytest.raises(ConfigError, match="only unencrypted PKCS#8 Ed25519 and X25519"):
        load_private_pem(ed448)


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")
@pytest.mark.parametrize("algorithm", ["ed25519", "x25519"])
def test_key_files_of_the_openssl_command_both_ways(algorithm: str) -> None:
    def openssl(*args: str, data: bytes = b"") -> bytes:
        return subprocess.run(["openssl", *args], input=data, capture_output=True, check=True, timeout=30).stdout

    theirs = openssl("genpkey", "-algorithm", algorithm)
    key = load_private_pem(theirs)
    assert openssl("pkey", "-pubout", "-outform", "DER", data=theirs)[-32:] == key.public_bytes_raw()
    ours = (
        AgentKeys(Ed25519Key(key.private_bytes_raw()), X25519Key.generate()).sign_pem()
        if algorithm == "ed25519"
        else AgentKeys(Ed25519Key.generate(), X25519Key(key.private_bytes_raw())).kex_pem()
    )
    assert ours == theirs
    assert openssl("pkey", "-pubout", "-outform", "DER", data=ours)[-32:] == key.public_bytes_raw()

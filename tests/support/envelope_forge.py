"""Forge envelopes field by field: what a hostile enrolled agent (it holds its own keys) can send.

:class:`Parts` holds every header and body field of a v1 envelope as plain CBOR values;
:func:`forge` signs and encrypts them exactly as ``rpm_core.envelope`` would (the same AAD, the
same KDF context, the agent's real keys), so that a field changed with :func:`Parts.set` reaches
the check that reads it: a changed body field still decrypts and verifies. Values that CBOR can
carry but Python cannot (invalid UTF-8 in a text string, raw encodings) are :class:`RawCBOR`.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from typing import Any

import cbor2
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cwt.utils import to_recipient_context

from rpm_core.envelope import external_aad
from rpm_core.keys import AgentKeys, ServerPublicKey
from rpm_core.topics import Topic

__all__ = ["UNSET", "Parts", "RawCBOR", "dumps", "forge"]


@dataclass(frozen=True)
class RawCBOR:
    """Bytes written into the encoding as they are (one complete CBOR data item)."""

    data: bytes


class _Unset:
    def __repr__(self) -> str:
        return "UNSET"


UNSET: Any = _Unset()  # Parts.set(path, UNSET) removes the field


def _raw(encoder: Any, value: Any) -> None:
    if isinstance(value, RawCBOR):
        encoder.write(value.data)
        return
    raise TypeError(f"cannot encode {type(value).__name__}")


def dumps(value: Any) -> bytes:
    return cbor2.dumps(value, default=_raw)


@dataclass
class Parts:
    """Every field of an envelope; ``None`` in the computed slots means "as rpm_core computes it"."""

    body: Any
    sign_protected: Any
    sign_unprotected: Any
    enc_protected: Any
    enc_unprotected: Any
    rec_protected: Any
    rec_unprotected: Any
    rec_ciphertext: Any = b""
    payload: Any = None  # None: the encoded body
    signature: Any = None  # None: the agent's Ed25519 signature
    ciphertext: Any = None  # None: the AEAD of the COSE_Sign1
    recipients: Any = None  # None: [[rec_protected, rec_unprotected, rec_ciphertext]]
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def valid(cls, body: Any, *, agent: AgentKeys, server: ServerPublicKey) -> Parts:
        pub = agent.public()
        return cls(
            body=body,
            sign_protected={1: -8},
            sign_unprotected={4: pub.sign_kid.encode()},
            enc_protected={1: 24, -65537: 1},
            enc_unprotected={5: secrets.token_bytes(12)},
            rec_protected={1: -27},
            rec_unprotected={4: server.kid.encode(), -22: secrets.token_bytes(32), -2: {1: 1, -1: 4, -2: pub.kex}},
        )

    def set(self, path: tuple[Any, ...], value: Any) -> None:
        """Replace the field at ``path`` (an attribute, then keys or indexes) with ``value``."""
        if len(path) == 1:
            if value is UNSET:
                raise TypeError("an envelope slot cannot be missing")
            setattr(self, path[0], value)
            return
        target = getattr(self, path[0])
        for key in path[1:-1]:
            target = target[key]
        if value is UNSET:
            del target[path[-1]]
        else:
            target[path[-1]] = value


def forge(parts: Parts, *, topic: Topic, agent: AgentKeys, server: ServerPublicKey) -> bytes:
    """Sign and encrypt ``parts`` as ``rpm_core.envelope.seal_envelope`` does (for any field values)."""
    aad = external_aad(topic)
    payload = dumps(parts.body) if parts.payload is None else parts.payload
    sign_protected = dumps(parts.sign_protected)
    signature = parts.signature
    if signature is None:
        signed_part = payload if isinstance(payload, bytes) else b""
        signature = agent.sign.sign(dumps(["Signature1", sign_protected, aad, signed_part]))
    signed = dumps(cbor2.CBORTag(18, [sign_protected, parts.sign_unprotected, payload, signature]))

    enc_protected = dumps(parts.enc_protected)
    rec_protected = dumps(parts.rec_protected)
    ciphertext = parts.ciphertext
    if ciphertext is None:
        header = parts.rec_unprotected if isinstance(parts.rec_unprotected, dict) else {}
        try:
            context = cbor2.dumps(to_recipient_context(-27, header, {"alg": "ChaCha20/Poly1305"}))
        except Exception:  # noqa: BLE001 - a forged header cwt cannot build a context from: any key will do
            context = b""
        shared = agent.kex.exchange(server.kex)
        cek = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=context).derive(shared)
        iv = parts.enc_unprotected.get(5) if isinstance(parts.enc_unprotected, dict) else None
        nonce = iv if isinstance(iv, bytes) and len(iv) == 12 else bytes(12)
        ciphertext = ChaCha20Poly1305(cek).encrypt(nonce, signed, dumps(["Encrypt", enc_protected, aad]))
    recipients = parts.recipients
    if recipients is None:
        recipients = [[rec_protected, parts.rec_unprotected, parts.rec_ciphertext]]
    return dumps(cbor2.CBORTag(96, [enc_protected, parts.enc_unprotected, ciphertext, recipients]))

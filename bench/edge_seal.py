"""The agent's CPU per envelope sealed and per outbox row: libsodium (PyNaCl) against cryptography. Prints JSON.

The agent seals with libsodium through PyNaCl's bindings (``rpm_core.envelope.seal_batch``); before
issue 15 item 4 it sealed the same bytes with ``cryptography`` (OpenSSL). This times both on the
same one-reading batches (``--readings``) and keys, in alternating rounds (``--repeat``), as process
CPU time (``time.process_time``) per unit, minimum and median over the rounds:

- ``seal_pynacl``: ``seal_batch`` as the agent runs it (body encoding, COSE_Sign1 with Ed25519,
  X25519 ECDH-SS, HKDF-SHA256, ChaCha20-Poly1305, CBOR); ``rpm_core.keys.X25519Key.exchange``
  remembers its last result, so the X25519 multiplication with the one server key is not repeated
  (``seal_pynacl_uncached``: the same with the memo cleared before each seal);
- ``seal_cryptography``: the same function as it was written with ``cryptography`` (below,
  :func:`seal_with_cryptography`; checked to give the same bytes before timing);
- ``sign_*``, ``exchange_*``, ``aead_*``: one Ed25519 signature of a one-reading Sig_structure, one
  X25519 multiplication (uncached), one ChaCha20-Poly1305 encryption of an envelope-sized message (a fresh content
  key each time, so cryptography builds its cipher object each time, as the sealer did), through each;
- ``row_seal_*``, ``row_open_*``: one outbox row (a ~20-byte reading) sealed and opened with
  ``edge_agent.outbox.codec.RowCipher`` and with cryptography's ``ChaCha20Poly1305`` as it was.

Run: ``.venv/bin/python -m bench.edge_seal``
"""

from __future__ import annotations

import argparse
import json
import secrets
import statistics
import time
from collections.abc import Callable
from datetime import UTC, datetime

import cbor2
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from nacl.bindings import crypto_aead_chacha20poly1305_ietf_encrypt, crypto_scalarmult

from edge_agent.outbox.codec import RowCipher
from rpm_core import envelope as env
from rpm_core.ids import agent_id, org_id
from rpm_core.keys import AgentKeys, ServerKey
from rpm_core.reading import Reading
from rpm_core.topics import Topic

T = datetime(2026, 3, 1, 8, 30, tzinfo=UTC)
AGENT = agent_id("agt-00001")
# The protected headers, encoded once, as the sealer always did.
_SIGN_PROTECTED = cbor2.dumps({env.ALG: env.EDDSA})
_ENCRYPT_PROTECTED = cbor2.dumps({env.ALG: env.CHACHA20_POLY1305, env.VERSION_LABEL: env.ENVELOPE_VERSION})
_RECIPIENT_PROTECTED = cbor2.dumps({env.ALG: env.ECDH_SS_HKDF_256})


class CryptographyAgent:
    """The agent's keys as cryptography objects, as the agent held them before."""

    def __init__(self, keys: AgentKeys) -> None:
        self.sign = Ed25519PrivateKey.from_private_bytes(keys.sign.private_bytes_raw())
        self.kex = X25519PrivateKey.from_private_bytes(keys.kex.private_bytes_raw())
        self.public = keys.public()


def seal_with_cryptography(
    body: bytes, *, topic: Topic, agent: CryptographyAgent, server_kex: bytes, server_kid: str, nonce: bytes, pu: bytes
) -> bytes:
    """``rpm_core.envelope.seal_envelope`` as written with cryptography (commit eb8ea72)."""
    aad = env.external_aad(topic)
    signature = agent.sign.sign(cbor2.dumps(["Signature1", _SIGN_PROTECTED, aad, body]))
    sign1 = [_SIGN_PROTECTED, {env.KID: agent.public.sign_kid.encode()}, body, signature]
    signed = cbor2.dumps(cbor2.CBORTag(env.COSE_SIGN1_TAG, sign1))
    shared = agent.kex.exchange(X25519PublicKey.from_public_bytes(server_kex))
    ciphertext = ChaCha20Poly1305(env.content_key(shared, pu)).encrypt(
        nonce, signed, cbor2.dumps(["Encrypt", _ENCRYPT_PROTECTED, aad])
    )
    static_key = {1: env.OKP, -1: env.X25519, -2: agent.public.kex}
    unprotected = {env.KID: server_kid.encode(), env.PARTY_U_NONCE: pu, env.STATIC_KEY: static_key}
    message = [_ENCRYPT_PROTECTED, {env.IV: nonce}, ciphertext, [[_RECIPIENT_PROTECTED, unprotected, b""]]]
    return cbor2.dumps(cbor2.CBORTag(env.COSE_ENCRYPT_TAG, message))


def _batch(seq: int, n: int) -> env.ReadingBatch:
    readings = tuple(
        Reading(
            agent_id=AGENT,
            device_id="F0:12:34:56:78:9A",
            seq=seq + i,
            metric="heart_rate",
            value=60.0 + i,
            measured_at=T,
            flags=frozenset({"sensor_contact:detected"}),
        )
        for i in range(n)
    )
    return env.ReadingBatch(org_id("bench"), AGENT, T, readings)


def main() -> None:
    ap = argparse.ArgumentParser(description="the agent's CPU per envelope sealed and per outbox row")
    ap.add_argument("--units", type=int, default=2000, help="envelopes (and rows) per round")
    ap.add_argument("--readings", type=int, default=1, help="readings per envelope")
    ap.add_argument("--repeat", type=int, default=5, help="alternating rounds")
    args = ap.parse_args()
    keys, server = AgentKeys.generate(), ServerKey.generate()
    pub = server.public()
    old = CryptographyAgent(keys)
    batches = [_batch(1 + i * args.readings, args.readings) for i in range(args.units)]
    topic = Topic.readings(batches[0].org, AGENT)
    bodies = [env.encode_batch(b) for b in batches]

    nonce, pu = secrets.token_bytes(12), secrets.token_bytes(32)
    ours = env.seal_batch(batches[0], agent=keys, server=pub, nonce=nonce, party_u_nonce=pu)[1]
    theirs = seal_with_cryptography(
        bodies[0], topic=topic, agent=old, server_kex=pub.kex, server_kid=pub.kid, nonce=nonce, pu=pu
    )
    assert ours == theirs, "the two sealers disagree"

    def seal_cryptography(i: int) -> object:  # encode_batch included, as in seal_batch
        body = env.encode_batch(batches[i])
        iv, p = secrets.token_bytes(12), secrets.token_bytes(32)
        return seal_with_cryptography(
            body, topic=topic, agent=old, server_kex=pub.kex, server_kid=pub.kid, nonce=iv, pu=p
        )

    def seal_uncached(i: int) -> object:  # as seal_pynacl, the X25519 multiplication done each time
        keys.kex._last = None  # the memo, forgotten to time what it saves
        return env.seal_batch(batches[i], agent=keys, server=pub)

    sig_structure = cbor2.dumps(["Signature1", b"\xa1\x01\x27", env.external_aad(topic), bodies[0]])
    sign1 = ours  # about the size of the COSE_Sign1 the AEAD encrypts
    key32, kex_private = secrets.token_bytes(32), keys.kex.private_bytes_raw()
    c_aead, c_server = ChaCha20Poly1305(key32), X25519PublicKey.from_public_bytes(pub.kex)
    cipher = RowCipher(key32, AGENT)
    row_plain = bytes(20)
    row_aad = b"vigil-outbox/1" + AGENT.encode() + b"\x00r" + (1).to_bytes(8, "big")
    our_row = cipher.seal(1, row_plain)
    their_row = our_row[:12] + c_aead.encrypt(our_row[:12], row_plain, row_aad)
    assert their_row == our_row, "the two outbox ciphers disagree"

    stages: dict[str, Callable[[int], object]] = {
        "seal_pynacl": lambda i: env.seal_batch(batches[i], agent=keys, server=pub),
        "seal_cryptography": seal_cryptography,
        "seal_pynacl_uncached": seal_uncached,
        "sign_pynacl": lambda i: keys.sign.sign(sig_structure),
        "sign_cryptography": lambda i: old.sign.sign(sig_structure),
        "exchange_pynacl": lambda i: crypto_scalarmult(kex_private, pub.kex),
        "exchange_cryptography": lambda i: old.kex.exchange(c_server),
        "aead_pynacl": lambda i: crypto_aead_chacha20poly1305_ietf_encrypt(sign1, b"aad", nonce, key32),
        "aead_cryptography": lambda i: ChaCha20Poly1305(key32).encrypt(nonce, sign1, b"aad"),
        "row_seal_pynacl": lambda i: cipher.seal(1, row_plain),
        "row_seal_cryptography": lambda i: (lambda n: n + c_aead.encrypt(n, row_plain, row_aad))(
            secrets.token_bytes(12)
        ),
        "row_open_pynacl": lambda i: cipher.open(1, our_row),
        "row_open_cryptography": lambda i: c_aead.decrypt(our_row[:12], our_row[12:], row_aad),
    }
    runs: dict[str, list[float]] = {name: [] for name in stages}
    for _ in range(args.repeat):
        for name, stage in stages.items():
            c0 = time.process_time()
            for i in range(args.units):
                stage(i)
            runs[name].append((time.process_time() - c0) / args.units * 1e6)
    out: dict[str, object] = {"units": args.units, "readings_per_envelope": args.readings, "bytes": len(ours)}
    for name, values in runs.items():
        out[f"{name}_cpu_us_min"] = round(min(values), 1)
        out[f"{name}_cpu_us_median"] = round(statistics.median(values), 1)
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()

"""Ingest's per-envelope work without a broker or a database: CPU microseconds per envelope. Prints JSON.

Envelopes of ``--readings`` readings (default 1, the fleet's shape) from ``--agents`` registered
agents are sealed first (``rpm_core.envelope.seal_batch``); then one :class:`ingest.opener.EnvelopeOpener`
(one worker's) opens them all, ``--repeat`` times. Process CPU time (``time.process_time``) per
envelope, minimum and median over the repetitions, for:

- ``decrypt``: the outer COSE_Encrypt layer alone (parse, content key, ChaCha20/Poly1305);
- ``open``: decrypt and verify the agent's Ed25519 COSE_Sign1 (what ``classify`` asks per envelope);
- ``open_decode``: open plus validating the body into row values (``decode_values``);
- ``ed25519_cryptography`` and ``ed25519_pynacl``: one Ed25519 verification of a Sig_structure of
  the same size through each binding (``cryptography``/OpenSSL, PyNaCl/libsodium), the comparison
  behind the opener's choice of libsodium.

The rest of the per-envelope path (paho's packet handling, the database transaction, receipts) is in
``bench.ingest``; this isolates the part that is pure CPU in ingest's own code, so it can be compared
before and after a change on a busy machine (the minimum is the least disturbed run).

Run: ``.venv/bin/python -m bench.ingest_opener``
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from datetime import UTC, datetime

from cryptography.hazmat.primitives import serialization as ser
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from nacl.signing import VerifyKey

from ingest.opener import EnvelopeOpener
from rpm_core.envelope import ReadingBatch, seal_batch
from rpm_core.ids import agent_id, org_id
from rpm_core.keys import AgentKeys, AgentPublicKeys, ServerKey
from rpm_core.reading import Reading
from rpm_core.topics import Topic

ORG = org_id("bench")
T = datetime(2026, 3, 1, 8, 30, tzinfo=UTC)


def _batch(agent: str, seq: int, n: int) -> ReadingBatch:
    readings = tuple(
        Reading(
            agent_id=agent,
            device_id="F0:12:34:56:78:9A",
            seq=seq + i,
            metric="heart_rate",
            value=60.0 + i,
            measured_at=T,
            flags=frozenset({"contact"}),
        )
        for i in range(n)
    )
    return ReadingBatch(ORG, agent_id(agent), T, readings)


def main() -> None:
    ap = argparse.ArgumentParser(description="ingest's per-envelope CPU: open, verify, validate")
    ap.add_argument("--envelopes", type=int, default=2000)
    ap.add_argument("--agents", type=int, default=100)
    ap.add_argument("--readings", type=int, default=1, help="readings per envelope")
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    server = ServerKey.generate()
    keys = [AgentKeys.generate() for _ in range(args.agents)]
    sealed: list[tuple[Topic, bytes, AgentPublicKeys]] = []
    for i in range(args.envelopes):
        a = i % args.agents
        topic, data = seal_batch(_batch(f"agt-{a:05d}", 1 + i, args.readings), agent=keys[a], server=server.public())
        sealed.append((topic, data, keys[a].public()))
    opener = EnvelopeOpener({server.kid: server})

    def decrypt(t: Topic, d: bytes, k: AgentPublicKeys) -> object:
        return opener._decrypt(d, opener._aad(t), sender_kex=k.kex)

    def open_(t: Topic, d: bytes, k: AgentPublicKeys) -> object:
        return opener.open(d, topic=t, agent=k)

    def open_decode(t: Topic, d: bytes, k: AgentPublicKeys) -> object:
        return opener.decode_values(opener.open(d, topic=t, agent=k), topic=t)

    signer = Ed25519PrivateKey.generate()
    public = signer.public_key()
    message = bytes(160)  # about a one-reading Sig_structure
    signature = signer.sign(message)
    nacl_key = VerifyKey(public.public_bytes(ser.Encoding.Raw, ser.PublicFormat.Raw))

    def ed25519_cryptography(t: Topic, d: bytes, k: AgentPublicKeys) -> object:
        public.verify(signature, message)
        return None

    def ed25519_pynacl(t: Topic, d: bytes, k: AgentPublicKeys) -> object:
        return nacl_key.verify(message, signature)

    stages: dict[str, Callable[[Topic, bytes, AgentPublicKeys], object]] = {
        "decrypt": decrypt,
        "open": open_,
        "open_decode": open_decode,
        "ed25519_cryptography": ed25519_cryptography,
        "ed25519_pynacl": ed25519_pynacl,
    }
    out: dict[str, object] = {"envelopes": args.envelopes, "agents": args.agents}
    out["readings_per_envelope"] = args.readings
    for name, stage in stages.items():
        runs = []
        for _ in range(args.repeat):
            c0 = time.process_time()
            for t, d, k in sealed:
                stage(t, d, k)
            runs.append((time.process_time() - c0) / len(sealed) * 1e6)
        out[f"{name}_cpu_us_min"] = round(min(runs), 1)
        out[f"{name}_cpu_us_median"] = round(statistics.median(runs), 1)
    print(json.dumps(out))


if __name__ == "__main__":
    main()

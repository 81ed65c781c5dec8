"""What ``bench.fuzz`` fuzzes: every parser that reads bytes someone else wrote (catalogue 23 and 24).

A :class:`Target` is one function of bytes that raises only on a bug: each parser is called the
way production calls it and the exceptions its contract names (``DecodeError``, the
``EnvelopeError`` tree, ``ConfigError``) are the expected outcome; anything else escapes and is a
finding. Seeds are valid inputs (the public vectors, real sealed envelopes, a real receipt, a real
agent.toml and bundle) that the engines mutate.

- ``gatt``: ``edge_agent.devices.decode`` for every characteristic in the registry (first byte picks it)
- ``racp``: RACP responses (the agent reads them) and requests (the emulated meter reads them)
- ``envelope``: the outer COSE layers at ingest (``EnvelopeOpener.open``, ``open_status``, ``open_registration``)
- ``body``: the signed CBOR body behind them: the bytes are sealed and signed with real keys first, so
  the fuzzer reaches ``decode_batch``, the status and registration parsers and ``declared_sequences``
- ``downlink``: receipts at the agent, as mutated bytes and as server-signed bodies
- ``config``: agent.toml and the ingest settings file (TOML through pydantic), enrollment bundles (JSON)
"""

from __future__ import annotations

import functools
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import cbor2

from edge_agent.config_file import read_config, render_config
from edge_agent.devices import REGISTRY, DecodeError, decode
from edge_agent.devices.racp import RacpRequest, parse_racp_response
from edge_agent.errors import EnrollmentError
from edge_agent.settings import PairedDevice, load_edge_settings
from ingest.opener import EnvelopeOpener
from ingest.rows import declared_sequences
from ingest.settings import IngestSettings
from rpm_core.downlink import Receipt, sign_downlink, sign_receipt, verify_receipt
from rpm_core.enrollment import BrokerEndpoint, EnrollmentBundle, ServerKeyInfo, new_token, seal_registration
from rpm_core.envelope import ReadingBatch, encode_batch, seal_batch, seal_envelope
from rpm_core.errors import ConfigError, EnvelopeError
from rpm_core.ids import agent_id, org_id
from rpm_core.keys import AgentKeys, ServerKey
from rpm_core.reading import Reading, SeqRange
from rpm_core.settings import load_settings
from rpm_core.status import AgentStatus
from rpm_core.topics import Kind, Topic

__all__ = ["TARGETS", "Target"]

ORG, AGENT = org_id("clinic-1"), agent_id("agt-fuzz-1")
CHARACTERISTICS = tuple(sorted(REGISTRY))


@dataclass(frozen=True, slots=True)
class Target:
    name: str
    check: Callable[[bytes], None]  # raises only on a bug
    seeds: Callable[[], list[bytes]]


# -- GATT and RACP --------------------------------------------------------------------------------

GATT_VECTORS = [
    (0x2A37, "1E 55 32 00 21 00"),
    (0x2A35, "1E 8A 00 58 00 78 00 00 00 04 11 14 29 3B 3C 00 01 27 00"),
    (0x2A35, "15 BD F0 0B 00 9F F0 3C 00 12 00"),
    (0x2A36, "00 96 00 FF 07 FF 07"),
    (0x2A1C, "06 B0 0E 00 FE DC 07 0C 05 0B 32 1B 04"),
    (0x2A18, "1B 01 00 E3 07 02 1B 0B 0A 1E FB FF 1E 00 12 05 01"),
    (0x2A5E, "0F AC F3 BE F5 E8 07 0B 1D 17 08 39 20 40 22 00 00 66 E3"),
    (0x2A5F, "1C 5F 00 5A 00 20 00 00 00 00 57 F0"),
    (0x2A9D, "01 54 3D"),
    (0x2A34, "FF 00 00 B3 03 64 00 04 12 3C 00 32 04 D2 F4 59 F1"),
    (0x2A52, "06 00 01 01"),
    (0x2A52, "05 00 0A 00"),
    (0x2A19, "55"),
    (0x2A2B, "E8 07 0B 1D 17 08 39 05 00 00"),
]


def _gatt_seeds() -> list[bytes]:
    return [bytes([CHARACTERISTICS.index(c)]) + bytes.fromhex(p) for c, p in GATT_VECTORS if c in CHARACTERISTICS]


def check_gatt(data: bytes) -> None:
    if not data:
        return
    characteristic = CHARACTERISTICS[data[0] % len(CHARACTERISTICS)]
    try:
        readings = decode(characteristic, data[1:])
    except DecodeError as exc:
        if exc.characteristic != characteristic:
            raise AssertionError("a decode error names another characteristic") from exc
        return
    for r in readings:
        if r.characteristic != characteristic or (r.value is not None and r.value != r.value):
            raise AssertionError("a reading for another characteristic, or a NaN value")


def _racp_seeds() -> list[bytes]:
    return [b"\x00" + bytes.fromhex(h) for h in ("06 00 01 01", "05 00 0A 00", "06 00 01 06")] + [
        b"\x01" + bytes.fromhex(h) for h in ("01 01", "04 01", "01 03 01 05 00", "01 04 01 01 00 05 00", "03 00")
    ]


def check_racp(data: bytes) -> None:
    if not data:
        return
    try:
        if data[0] % 2 == 0:
            parse_racp_response(data[1:])
        else:
            RacpRequest.from_bytes(data[1:])
    except DecodeError:
        return


# -- envelopes, bodies, receipts ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Keys:
    agent: AgentKeys
    server: ServerKey
    opener: EnvelopeOpener


@functools.cache
def _keys() -> _Keys:
    server = ServerKey.generate()
    return _Keys(AgentKeys.generate(), server, EnvelopeOpener({server.public().kid: server}))


T0 = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)


def _batch() -> ReadingBatch:
    rows = tuple(
        Reading(
            agent_id=AGENT, device_id="F0:12:34:56:78:9A", seq=s, metric="heart_rate", value=60.0 + s,
            measured_at=T0 + timedelta(seconds=s), flags=frozenset({"contact"}),
        )
        for s in range(1, 4)
    )  # fmt: skip
    return ReadingBatch(ORG, AGENT, T0, rows, (SeqRange(first=5, last=7),))


def _status_body() -> bytes:
    status = AgentStatus(org=ORG, agent=AGENT, online=True, sent_at=T0, outbox_depth=3, alarms=frozenset())
    return cbor2.dumps({"v": 1, **status.to_doc()}, canonical=True)


def _bundle() -> EnrollmentBundle:
    return EnrollmentBundle(
        org=ORG,
        agent_id=AGENT,
        broker=BrokerEndpoint(host="127.0.0.1", port=8883, server_name="broker.vigil", ca_pem="-----BEGIN..."),
        mqtt_username=AGENT,
        mqtt_password="pw-secret",  # noqa: S106 - a fuzz seed, not a credential
        enrollment_token=new_token(),
        server_keys=(ServerKeyInfo.of(_keys().server.public()),),
        expires_at=T0 + timedelta(days=7),
    )


def _bundle_json() -> str:
    return _bundle().to_json()


def _envelope_seeds() -> list[bytes]:
    k = _keys()
    _, batch = seal_batch(_batch(), agent=k.agent, server=k.server.public())
    status = seal_envelope(
        _status_body(), topic=Topic(ORG, AGENT, Kind.STATUS), agent=k.agent, server=k.server.public()
    )
    _, registration = seal_registration(_bundle(), k.agent, agent_version="fuzz")
    return [b"\x00" + batch, b"\x01" + status, b"\x02" + registration, b"\x00" + batch[:64]]


def check_envelope(data: bytes) -> None:
    if not data:
        return
    k = _keys()
    kind, payload = data[0] % 3, data[1:]
    try:
        if kind == 0:
            k.opener.open_batch(payload, topic=Topic.readings(ORG, AGENT), agent=k.agent.public())
        elif kind == 1:
            k.opener.open_status(payload, topic=Topic(ORG, AGENT, Kind.STATUS), agent=k.agent.public())
        else:
            k.opener.open_registration(payload, topic=Topic(ORG, AGENT, Kind.STATUS))
    except EnvelopeError:
        return


def _body_seeds() -> list[bytes]:
    return [b"\x00" + encode_batch(_batch()), b"\x01" + _status_body()]


def check_body(data: bytes) -> None:
    """The body sealed and signed for real, then opened: the fuzzer controls what the signature covers."""
    if not data:
        return
    k = _keys()
    kind, body = data[0] % 3, data[1:]
    topic = Topic.readings(ORG, AGENT) if kind != 1 else Topic(ORG, AGENT, Kind.STATUS)
    try:
        sealed = seal_envelope(body, topic=topic, agent=k.agent, server=k.server.public())
    except EnvelopeError:
        return  # the agent refuses to seal it (too large): nothing to open
    try:
        if kind == 0:
            k.opener.open_batch(sealed, topic=topic, agent=k.agent.public())
        elif kind == 1:
            k.opener.open_status(sealed, topic=topic, agent=k.agent.public())
        else:
            k.opener.open_registration(sealed, topic=Topic(ORG, AGENT, Kind.STATUS))
    except EnvelopeError:
        pass
    declared_sequences(body)  # lenient by contract: never raises


def _receipt_topic() -> Topic:
    return Topic(ORG, AGENT, Kind.RECEIPTS)


def _downlink_seeds() -> list[bytes]:
    receipt = sign_receipt(Receipt(ORG, AGENT, 42, T0), _keys().server)
    body = cbor2.dumps({"v": 1, "org": ORG, "agent": AGENT, "through": 42, "at": 1_772_352_000_000_000})
    return [b"\x00" + receipt, b"\x01" + body]


def check_downlink(data: bytes) -> None:
    if not data:
        return
    k, topic = _keys(), _receipt_topic()
    trusted = [k.server.public()]
    payload = data[1:]
    if data[0] % 2:  # the fuzzer's body, signed by the server: reaches the receipt's own parser
        payload = sign_downlink(payload, topic=topic, server=k.server)
    try:
        verify_receipt(payload, topic=topic, trusted=trusted)
    except EnvelopeError:
        return


# -- configuration files --------------------------------------------------------------------------


def _config_seeds() -> list[bytes]:
    device = PairedDevice(address="E0:00:00:00:00:01", profile="heart_rate", name="HR")
    toml = render_config({"org": ORG, "agent_id": AGENT, "broker_host": "localhost", "mqtt_keepalive_s": 30}, [device])
    ingest = 'database_url = "postgresql:///vigil"\nmqtt_port = 8883\nbatch_max_wait_ms = 20\n'
    return [b"\x00" + toml.encode(), b"\x01" + ingest.encode(), b"\x02" + _bundle_json().encode()]


_TMP = Path(tempfile.gettempdir())


def check_config(data: bytes) -> None:
    if not data:
        return
    kind, text = data[0] % 3, data[1:]
    if kind == 2:
        try:
            EnrollmentBundle.from_json(text.decode("utf-8", "surrogateescape"))
        except ConfigError:
            return
        return
    with tempfile.NamedTemporaryFile(dir=_TMP, suffix=".toml") as f:
        f.write(text)
        f.flush()
        try:
            if kind == 0:
                read_config(Path(f.name))  # what `vigil edge enroll` and the installer read
                load_edge_settings(Path(f.name))
            else:
                load_settings(IngestSettings, config_file=Path(f.name))
        except (ConfigError, EnrollmentError):
            return


TARGETS: dict[str, Target] = {
    t.name: t
    for t in (
        Target("gatt", check_gatt, _gatt_seeds),
        Target("racp", check_racp, _racp_seeds),
        Target("envelope", check_envelope, _envelope_seeds),
        Target("body", check_body, _body_seeds),
        Target("downlink", check_downlink, _downlink_seeds),
        Target("config", check_config, _config_seeds),
    )
}

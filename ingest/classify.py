"""Turn a batch of MQTT messages into one database write: pure, no I/O.

Per message, by topic kind and the agent's registered state (loaded for the batch):

* ``.../up/readings`` of an active agent: open + verify with its keys, validate, map to the patient
  assigned at each reading's measured time (or the current one), declare the sequence numbers and
  gaps as resolved for the receipt.
* ``.../up/status`` of a pending agent: a registration; token digest and expiry checked, keys
  stored, agent activated (also for the rest of this batch). Of an active agent: last seen and
  device rows. A re-sent registration of an already active agent with the same keys is absorbed.
* anything that fails: a dead letter with the exception's stable ``reason``. If the envelope's
  signature verified, its sequence numbers still count as resolved (they will never be accepted).

Nothing here logs payloads or values: only ids and reasons.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, MutableMapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime

from ingest.acks import AckToken
from rpm_core.enrollment import open_registration
from rpm_core.envelope import declared_sequences, decode_values, open_envelope
from rpm_core.errors import EnvelopeError, MalformedEnvelope, TopicError
from rpm_core.keys import ServerKey
from rpm_core.status import AgentStatus, open_status
from rpm_core.topics import Direction, Kind, Topic
from store.agents import AgentRecord
from store.ingest_db import Activation, BatchWrite
from store.ingest_state import DeadLetterRow, DeviceRow, GapRow
from store.readings import ReadingRow

__all__ = ["Classified", "Incoming", "classify", "seq_ranges"]


@dataclass(frozen=True, slots=True)
class Incoming:
    topic: str
    payload: bytes
    token: AckToken | None  # None for QoS 0 (nothing to acknowledge)
    received: float  # monotonic seconds at arrival


@dataclass(slots=True)
class Classified:
    write: BatchWrite = field(default_factory=BatchWrite)
    kinds: Counter[str] = field(default_factory=Counter)  # readings | status | registration | dead_letter
    dead: Counter[str] = field(default_factory=Counter)  # by reason
    receipts: dict[str, str] = field(default_factory=dict)  # agent -> org: send a receipt after commit
    sent_at: list[datetime] = field(default_factory=list)  # per readings envelope, for the latency metric


class _Dead(Exception):
    def __init__(self, reason: str, detail: str = "", resolved: Sequence[tuple[int, int]] = ()) -> None:
        super().__init__(reason)
        self.reason = reason
        self.detail = detail
        self.resolved = resolved


def seq_ranges(seqs: Sequence[int]) -> list[tuple[int, int]]:
    """Sorted inclusive ranges covering ``seqs``."""
    out: list[tuple[int, int]] = []
    for s in sorted(set(seqs)):
        if out and s == out[-1][1] + 1:
            out[-1] = (out[-1][0], s)
        else:
            out.append((s, s))
    return out


def classify(
    messages: Sequence[Incoming],
    agents: MutableMapping[str, AgentRecord],
    server_keys: Mapping[str, ServerKey],
    *,
    now: datetime,
) -> Classified:
    """``agents`` is updated in place when a registration activates an agent within the batch."""
    out = Classified()
    for msg in messages:
        topic: Topic | None = None
        try:
            topic = _topic(msg.topic)
            rec = _agent(agents, topic)
            if topic.kind is Kind.READINGS:
                _readings(out, msg, topic, rec, server_keys)
            else:
                _status(out, msg, topic, rec, agents, server_keys, now)
        except _Dead as dead:
            _dead_letter(out, msg, topic, dead)
    return out


def _agent(agents: Mapping[str, AgentRecord], topic: Topic) -> AgentRecord:
    rec = agents.get(topic.agent)
    if rec is None or rec.org_id != topic.org:
        raise _Dead("unknown_key", "unknown agent")
    return rec


def _topic(raw: str) -> Topic:
    try:
        topic = Topic.parse(raw)
    except TopicError as exc:
        raise _Dead(exc.reason, exc.why[:200]) from exc
    if topic.kind.direction is not Direction.UP:
        raise _Dead("bad_topic", "downlink topic")
    return topic


def _dead_letter(out: Classified, msg: Incoming, topic: Topic | None, dead: _Dead) -> None:
    out.kinds["dead_letter"] += 1
    out.dead[dead.reason] += 1
    out.write.dead_letters.append(
        DeadLetterRow(
            topic=msg.topic[:512],
            reason=dead.reason,
            detail=dead.detail[:500],
            payload=msg.payload,
            org_id=topic.org if topic else None,
            agent_id=topic.agent if topic else None,
        )
    )
    if topic is not None and dead.resolved:
        _resolve(out, topic, dead.resolved)


def _resolve(out: Classified, topic: Topic, ranges: Sequence[tuple[int, int]]) -> None:
    entry = out.write.resolved.setdefault(topic.agent, (topic.org, []))
    entry[1].extend(ranges)
    out.receipts[topic.agent] = topic.org


def _not_active(rec: AgentRecord) -> _Dead:
    if rec.status == "revoked":
        return _Dead("revoked", "agent revoked")
    return _Dead("unknown_key", "agent has no registered keys")


def _readings(
    out: Classified, msg: Incoming, topic: Topic, rec: AgentRecord, server_keys: Mapping[str, ServerKey]
) -> None:
    if rec.status != "active" or rec.keys is None:
        raise _not_active(rec)
    try:
        body = open_envelope(msg.payload, topic=topic, server_keys=server_keys, agent=rec.keys)
    except EnvelopeError as exc:
        raise _Dead(exc.reason, _detail(exc)) from exc
    try:
        batch = decode_values(body, topic=topic)
    except EnvelopeError as exc:  # signed by the agent, but invalid: it will never become valid
        raise _Dead(exc.reason, _detail(exc), declared_sequences(body)) from exc
    org, agent = topic.org, topic.agent
    sole = _sole_patient(rec)
    rows = out.write.readings
    first = len(rows)
    for seq, device, metric, value, measured_at, device_time, flags in batch.rows:
        patient = sole if sole is not None else rec.patient_at(measured_at)
        if patient is None:
            del rows[first:]
            raise _Dead("unassigned", "agent has no patient")
        rows.append(ReadingRow(measured_at, org, patient, agent, device, metric, value, seq, flags, device_time))
    out.write.gaps.extend(GapRow(agent, org, g.first, g.last) for g in batch.gaps)
    out.write.seen[agent] = max(batch.sent_at, out.write.seen.get(agent, batch.sent_at))
    _resolve(out, topic, [*seq_ranges([r[0] for r in batch.rows]), *((g.first, g.last) for g in batch.gaps)])
    out.kinds["readings"] += 1
    out.sent_at.append(batch.sent_at)


def _sole_patient(rec: AgentRecord) -> str | None:
    """The patient of every reading when the agent has only ever had one, current, assignment
    (``AgentRecord.patient_at`` then answers it for any time); None: ask per reading."""
    a = rec.assignments
    return a[0].patient_id if len(a) == 1 and a[0].valid_to is None else None


def _status(
    out: Classified,
    msg: Incoming,
    topic: Topic,
    rec: AgentRecord,
    agents: MutableMapping[str, AgentRecord],
    server_keys: Mapping[str, ServerKey],
    now: datetime,
) -> None:
    if rec.status == "pending":
        _register(out, msg, topic, rec, agents, server_keys, now)
        return
    if rec.status != "active" or rec.keys is None:
        raise _not_active(rec)
    try:
        status = open_status(msg.payload, topic=topic, server_keys=server_keys, agent=rec.keys)
    except MalformedEnvelope as exc:
        if _is_repeated_registration(msg, topic, rec, server_keys):
            out.kinds["registration"] += 1
            out.receipts[topic.agent] = topic.org
            return
        raise _Dead(exc.reason, _detail(exc)) from exc
    except EnvelopeError as exc:
        raise _Dead(exc.reason, _detail(exc)) from exc
    _record_status(out, topic, status, now)


def _register(
    out: Classified,
    msg: Incoming,
    topic: Topic,
    rec: AgentRecord,
    agents: MutableMapping[str, AgentRecord],
    server_keys: Mapping[str, ServerKey],
    now: datetime,
) -> None:
    try:
        reg = open_registration(msg.payload, topic=topic, server_keys=server_keys)
    except EnvelopeError as exc:
        raise _Dead(exc.reason, _detail(exc)) from exc
    if rec.token_sha256 is None or not reg.token_matches(rec.token_sha256):
        raise _Dead("bad_token", "enrollment token does not match")
    if rec.enrollment_expires_at is not None and now >= rec.enrollment_expires_at:
        raise _Dead("enrollment_expired", "enrollment token expired")
    out.write.activations.append(Activation(topic.agent, reg.keys, reg.agent_version))
    out.write.seen[topic.agent] = now
    agents[topic.agent] = replace(rec, status="active", keys=reg.keys, token_sha256=None)
    out.receipts[topic.agent] = topic.org  # the first receipt tells the agent it is registered
    out.kinds["registration"] += 1


def _is_repeated_registration(
    msg: Incoming, topic: Topic, rec: AgentRecord, server_keys: Mapping[str, ServerKey]
) -> bool:
    try:
        return open_registration(msg.payload, topic=topic, server_keys=server_keys).keys == rec.keys
    except EnvelopeError:
        return False


def _record_status(out: Classified, topic: Topic, status: AgentStatus, now: datetime) -> None:
    out.write.seen[topic.agent] = max(status.sent_at, out.write.seen.get(topic.agent, status.sent_at))
    for d in status.devices:
        out.write.devices.append(
            DeviceRow(
                d.device_id, topic.org, topic.agent, d.profile, d.name, d.manufacturer, d.model, d.serial,
                d.firmware, d.battery_pct, d.last_seen,
            )
        )  # fmt: skip
    out.kinds["status"] += 1


def _detail(exc: EnvelopeError) -> str:
    """A PHI-free detail: the exception's own message names fields and kinds, never values."""
    return str(exc)[:500]

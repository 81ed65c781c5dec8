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
  A dead letter keeps at most ``Limits.payload_max_bytes`` of the payload, with the whole
  payload's length and SHA-256.
* **any other exception** while classifying one message (a bug, or hostile input that reaches a
  path nobody foresaw) is that message's failure, never the batch's: what the message had added
  is rolled back and it becomes a dead letter ``internal_error`` whose detail names the
  exception's type and where it was raised, never its text (which may hold untrusted data).

Freshness: a readings envelope whose ``sent_at`` lies more than ``Limits.max_age`` before the
server's clock, or more than ``Limits.max_ahead`` after it, is stored as usual (an offline backlog,
a Pi with a wrong clock) but its readings carry the flag ``ingest:sent_long_ago`` or
``ingest:sent_in_future`` and the envelope is counted in ``Classified.stale``; one sent more than
``Limits.max_behind`` (but less than ``max_age``) before the server's clock gets
``ingest:sent_late``. An agent seals every envelope when it sends it (also its offline backlog), so
a late ``sent_at`` means the Pi's clock is behind, or the envelope waited in the broker while ingest
was away. The ``ingest:``
flag namespace is the server's: such flags sent by an agent are dropped.

Nothing here logs payloads or values: only ids and reasons.
"""

from __future__ import annotations

import hashlib
import traceback
from collections import Counter
from collections.abc import Mapping, MutableMapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from pathlib import PurePath
from typing import Final

from ingest.acks import AckToken
from ingest.database import Activation, BatchWrite
from ingest.opener import EnvelopeOpener
from ingest.rows import declared_sequences
from rpm_core.errors import EnvelopeError, InvalidIdentifier, MalformedEnvelope, TopicError
from rpm_core.ids import agent_id, org_id
from rpm_core.status import AgentStatus
from rpm_core.topics import Direction, Kind, Topic
from store.agents import AgentRecord
from store.dead_letters import DeadLetterRow
from store.devices import DeviceRow
from store.fleet import AgentStatusRow
from store.readings import ReadingRow
from store.receipts import GapRow

__all__ = [
    "SENT_IN_FUTURE",
    "SENT_LATE",
    "SENT_LONG_AGO",
    "SERVER_FLAG_PREFIX",
    "Classified",
    "Incoming",
    "Limits",
    "classify",
    "dead_letter_row",
    "publisher_of",
    "seq_ranges",
]

SERVER_FLAG_PREFIX: Final = "ingest:"
SENT_LONG_AGO: Final = "ingest:sent_long_ago"
SENT_IN_FUTURE: Final = "ingest:sent_in_future"
SENT_LATE: Final = "ingest:sent_late"
_TOPIC_MAX: Final = 512
_DETAIL_MAX: Final = 500


@dataclass(frozen=True, slots=True)
class Incoming:
    topic: str
    payload: bytes
    token: AckToken | None  # None for QoS 0 (nothing to acknowledge)
    received: float  # monotonic seconds at arrival


@dataclass(frozen=True, slots=True)
class Limits:
    """Bounds from the settings (``IngestSettings``): dead-letter payload size and freshness windows."""

    payload_max_bytes: int = 8192
    max_age: timedelta = timedelta(days=7)
    max_ahead: timedelta = timedelta(minutes=5)
    max_behind: timedelta = timedelta(hours=1)


@dataclass(slots=True)
class Classified:
    write: BatchWrite = field(default_factory=BatchWrite)
    kinds: Counter[str] = field(default_factory=Counter)  # readings | status | registration | dead_letter
    dead: Counter[str] = field(default_factory=Counter)  # by reason
    receipts: dict[str, str] = field(default_factory=dict)  # agent -> org: send a receipt after commit
    sent_at: list[datetime] = field(default_factory=list)  # per readings envelope, for the latency metric
    # (agent, "sent_long_ago" | "sent_in_future" | "sent_late") -> readings envelopes outside the freshness window
    stale: Counter[tuple[str, str]] = field(default_factory=Counter)
    internal: list[tuple[str, str]] = field(default_factory=list)  # (topic, detail) of internal_error letters
    suppressed: Counter[str] = field(default_factory=Counter)  # agent -> dead letters over its rate (service)


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
    opener: EnvelopeOpener,
    *,
    now: datetime,
    limits: Limits = Limits(),
) -> Classified:
    """``agents`` is updated in place when a registration activates an agent within the batch;
    ``opener`` holds the server keys (and what it remembers between batches).

    Never raises because of a message: each one is stored, absorbed or dead-lettered.
    """
    out = Classified()
    for msg in messages:
        topic: Topic | None = None
        mark = _Mark.of(out)
        try:
            topic = _topic(msg.topic)
            rec = _agent(agents, topic)
            if topic.kind is Kind.READINGS:
                _readings(out, msg, topic, rec, opener, now, limits)
            else:
                _status(out, msg, topic, rec, agents, opener, now)
        except _Dead as dead:
            mark.rollback(out)
            _dead_letter(out, msg, topic, dead, limits)
        except Exception as exc:  # noqa: BLE001 - one message's failure, whatever it is, is that message's
            mark.rollback(out)
            detail = internal_detail(exc)
            out.internal.append((clean_topic(msg.topic)[:120], detail))
            _dead_letter(out, msg, None, _Dead("internal_error", detail), limits)
    return out


@dataclass(frozen=True, slots=True)
class _Mark:
    """How long the batch's lists were before a message: what to cut back if it fails."""

    readings: int
    gaps: int
    devices: int
    activations: int
    dead_letters: int
    sent_at: int

    @classmethod
    def of(cls, out: Classified) -> _Mark:
        w = out.write
        return cls(
            len(w.readings), len(w.gaps), len(w.devices), len(w.activations), len(w.dead_letters), len(out.sent_at)
        )

    def rollback(self, out: Classified) -> None:
        w = out.write
        del w.readings[self.readings :], w.gaps[self.gaps :], w.devices[self.devices :]
        del w.activations[self.activations :], w.dead_letters[self.dead_letters :], out.sent_at[self.sent_at :]


def internal_detail(exc: BaseException) -> str:
    """The type of an unexpected exception and where it was raised: never its text (untrusted data)."""
    where = ""
    for frame, lineno in traceback.walk_tb(exc.__traceback__):
        path = PurePath(frame.f_code.co_filename)
        where = f" at {path.parent.name}/{path.name}:{lineno}"  # the innermost frame wins
    return f"{type(exc).__name__[:60]}{where}"[:200]


def clean_topic(raw: str) -> str:
    """The topic as stored in a dead letter: bounded, control characters escaped."""
    head = raw[:_TOPIC_MAX]
    return head if head.isprintable() else head.encode("unicode_escape").decode("ascii")[:_TOPIC_MAX]


def publisher_of(raw: str) -> tuple[str | None, str | None]:
    """(org, agent) of the uplink subtree ``vigil/v1/{org}/{agent}/up/...`` a message was published
    in, also when the rest of the topic is not one ingest knows: the broker ACL lets an agent
    publish only in its own subtree, so these name the publisher."""
    parts = raw.split("/", 5)
    if len(parts) < 6 or parts[0] != "vigil" or parts[1] != "v1" or parts[4] != "up":
        return None, None
    try:
        return org_id(parts[2]), agent_id(parts[3])
    except InvalidIdentifier:
        return None, None


def dead_letter_row(
    raw_topic: str, reason: str, detail: str, payload: bytes, *, payload_max_bytes: int
) -> DeadLetterRow:
    """A dead letter keeping at most ``payload_max_bytes`` of the payload, with its full length and
    SHA-256 (an operator can still match it against a captured message)."""
    org, agent = publisher_of(raw_topic)
    return DeadLetterRow(
        topic=clean_topic(raw_topic),
        reason=reason,
        detail=detail[:_DETAIL_MAX],
        payload=payload[: max(payload_max_bytes, 0)],
        org_id=org,
        agent_id=agent,
        payload_bytes=len(payload),
        payload_sha256=hashlib.sha256(payload).digest(),
    )


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


def _dead_letter(out: Classified, msg: Incoming, topic: Topic | None, dead: _Dead, limits: Limits) -> None:
    out.kinds["dead_letter"] += 1
    out.dead[dead.reason] += 1
    out.write.dead_letters.append(
        dead_letter_row(msg.topic, dead.reason, dead.detail, msg.payload, payload_max_bytes=limits.payload_max_bytes)
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
    out: Classified,
    msg: Incoming,
    topic: Topic,
    rec: AgentRecord,
    opener: EnvelopeOpener,
    now: datetime,
    limits: Limits,
) -> None:
    if rec.status != "active" or rec.keys is None:
        raise _not_active(rec)
    try:
        body = opener.open(msg.payload, topic=topic, agent=rec.keys)
    except EnvelopeError as exc:
        raise _Dead(exc.reason, _detail(exc)) from exc
    try:
        batch = opener.decode_values(body, topic=topic)
    except EnvelopeError as exc:  # signed by the agent, but invalid: it will never become valid
        raise _Dead(exc.reason, _detail(exc), declared_sequences(body)) from exc
    org, agent = topic.org, topic.agent
    sole = _sole_patient(rec)
    stale = _staleness(batch.sent_at, now, limits)
    rows = out.write.readings
    for seq, device, metric, value, measured_at, device_time, flags in batch.rows:
        patient = sole if sole is not None else rec.patient_at(measured_at)
        if patient is None:
            raise _Dead("unassigned", "agent has no patient")  # classify rolls back this message's rows
        if stale is not None:
            flags = _server_flags(flags, stale)
        else:
            for f in flags:  # rarely more than one; the server's namespace is never the agent's
                if f.startswith(SERVER_FLAG_PREFIX):
                    flags = _server_flags(flags, None)
                    break
        rows.append(ReadingRow(measured_at, org, patient, agent, device, metric, value, seq, flags, device_time))
    out.write.gaps.extend(GapRow(agent, org, g.first, g.last, g.reason) for g in batch.gaps)
    seen = min(batch.sent_at, now)  # a clock running ahead must not pin last_seen_at in the future
    out.write.seen[agent] = max(seen, out.write.seen.get(agent, seen))
    _resolve(out, topic, [*seq_ranges([r[0] for r in batch.rows]), *((g.first, g.last) for g in batch.gaps)])
    out.kinds["readings"] += 1
    out.sent_at.append(batch.sent_at)
    if stale is not None:
        out.stale[(agent, stale.removeprefix(SERVER_FLAG_PREFIX))] += 1


def _staleness(sent_at: datetime, now: datetime, limits: Limits) -> str | None:
    """The freshness flag of an envelope sent at ``sent_at``, or None when it is within the window."""
    if sent_at < now - limits.max_age:
        return SENT_LONG_AGO
    if sent_at > now + limits.max_ahead:
        return SENT_IN_FUTURE
    if sent_at < now - limits.max_behind:
        return SENT_LATE
    return None


def _server_flags(flags: list[str], stale: str | None) -> list[str]:
    """The agent's flags without any in the server's namespace, plus the freshness flag."""
    kept = [f for f in flags if not f.startswith(SERVER_FLAG_PREFIX)]
    return sorted([*kept, stale]) if stale is not None else kept


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
    opener: EnvelopeOpener,
    now: datetime,
) -> None:
    if rec.status == "pending":
        _register(out, msg, topic, rec, agents, opener, now)
        return
    if rec.status != "active" or rec.keys is None:
        raise _not_active(rec)
    try:
        status = opener.open_status(msg.payload, topic=topic, agent=rec.keys)
    except MalformedEnvelope as exc:
        if _is_repeated_registration(msg, topic, rec, opener):
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
    opener: EnvelopeOpener,
    now: datetime,
) -> None:
    try:
        reg = opener.open_registration(msg.payload, topic=topic)
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


def _is_repeated_registration(msg: Incoming, topic: Topic, rec: AgentRecord, opener: EnvelopeOpener) -> bool:
    try:
        return opener.open_registration(msg.payload, topic=topic).keys == rec.keys
    except EnvelopeError:
        return False


def _record_status(out: Classified, topic: Topic, status: AgentStatus, now: datetime) -> None:
    seen = min(status.sent_at, now)  # a clock running ahead must not pin last_seen_at in the future
    out.write.seen[topic.agent] = max(seen, out.write.seen.get(topic.agent, seen))
    for d in status.devices:
        out.write.devices.append(
            DeviceRow(
                d.device_id, topic.org, topic.agent, d.profile, d.name, d.manufacturer, d.model, d.serial,
                d.firmware, d.battery_pct, d.last_seen,
            )
        )  # fmt: skip
    out.write.statuses.append(
        AgentStatusRow(
            topic.agent, topic.org, seen, status.online, status.agent_version, status.outbox_depth,
            status.outbox_oldest, status.last_receipt, tuple(sorted(status.alarms)),
        )
    )  # fmt: skip
    out.kinds["status"] += 1


def _detail(exc: EnvelopeError) -> str:
    """A PHI-free detail: the exception's own message names fields and kinds, never values
    (``rpm_core.errors`` describes untrusted values by type and size, bounded)."""
    return str(exc)[:_DETAIL_MAX]

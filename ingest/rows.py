"""The readings body of an envelope (format v1), validated: the map, each row, timestamps, gaps.

The server's side of ``rpm_core.envelope.encode_batch`` (the Pi never opens an envelope). A row is
``[seq, device_id, metric, value, measured_at_us, device_time, flags]``; see docs/envelope.md.

:func:`decode_batch` builds a :class:`~rpm_core.envelope.ReadingBatch` of readings;
:func:`reading_from_row` validates exactly what :class:`~rpm_core.reading.Reading` validates. For
canonical wire types it takes a fast path that builds the reading without running its checks a
second time; anything else goes through the dataclass's own checks. tests/ingest/test_rows.py
checks with hypothesis that both paths accept and reject the same rows and build equal readings.

:class:`RowsValidator` is the same validation for a whole body without building ``Reading``
objects at all: ingest stores plain values, so per reading it does the fast path's checks (the
agent id once per envelope, device ids and flags memoised in the validator, bounded) and returns a
tuple; any row it does not accept goes through :func:`reading_from_row`, which then raises exactly
what it raises. One validator per :class:`ingest.opener.EnvelopeOpener`: its memo is instance
state, never the process's.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, fields
from datetime import UTC, datetime, timedelta
from typing import Any, Final, TypeAlias

import cbor2

from ingest import untrusted
from rpm_core.envelope import ENVELOPE_VERSION, MAX_READINGS, ReadingBatch
from rpm_core.errors import BindingMismatch, ContractError, InvalidField, MalformedEnvelope, UnsupportedVersion
from rpm_core.ids import AgentId
from rpm_core.metrics import CATALOGUE
from rpm_core.reading import MAX_FLAGS, MAX_SEQ, Reading, SeqRange
from rpm_core.topics import Topic

__all__ = [
    "BodyValues",
    "RowValues",
    "RowsValidator",
    "declared_sequences",
    "decode_batch",
    "first_error",
    "from_micros",
    "gap_from_row",
    "reading_from_row",
]

_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)


def from_micros(us: object) -> datetime:
    if not isinstance(us, int) or isinstance(us, bool) or not (0 <= us < 2**62):
        raise MalformedEnvelope("bad timestamp")
    try:
        return _EPOCH + timedelta(microseconds=us)
    except OverflowError:  # past year 9999
        raise MalformedEnvelope("bad timestamp") from None


def _as_float(value: int | float) -> float:
    try:
        return float(value)
    except OverflowError:  # an integer beyond the float range: never a plausible reading
        raise MalformedEnvelope("value out of range") from None


def reading_from_row(agent: AgentId, row: object) -> Reading:
    if not (isinstance(row, list) and len(row) == 7):
        raise MalformedEnvelope("bad reading row")
    seq, device, metric, value, measured, device_time, flags = row
    if isinstance(value, bool) or not isinstance(value, int | float) or not isinstance(flags, list):
        raise MalformedEnvelope("bad reading row")
    fvalue = _as_float(value)
    if not math.isfinite(fvalue):
        raise MalformedEnvelope("non-finite value")
    measured_at = from_micros(measured)
    fast = _fast_reading(agent, seq, device, metric, fvalue, measured_at, device_time, flags)
    if fast is not None:
        return fast
    if not all(isinstance(f, str) for f in flags):  # hashing an array, a map or a tag raises: refuse first
        raise MalformedEnvelope("bad reading flags")
    return Reading(
        agent_id=agent,
        device_id=device,
        seq=seq,
        metric=metric,
        value=fvalue,
        measured_at=measured_at,
        device_time=device_time,
        flags=frozenset(flags),
    )


_DEVICE_RE: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9:_.-]{0,127}")
_AGENT_RE: Final = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}")
_FLAG_RE: Final = re.compile(r"[a-z0-9_:.-]{1,48}")


def _fast_reading(
    agent: str,
    seq: object,
    device: object,
    metric: object,
    value: float,
    measured_at: datetime,
    device_time: object,
    flags: list[Any],
) -> Reading | None:
    """The validated fast path: the same checks as :class:`Reading`'s ``__post_init__``, inline.

    It handles only the canonical wire types (exact ``int``/``str``, at most ``MAX_FLAGS`` flags) and
    returns None for anything else, which then goes through the dataclass's checks; a hypothesis test
    (tests/ingest/test_rows.py) checks both paths accept and reject the same rows and build equal
    readings. When a check fails it also returns None, so the dataclass raises the error.
    """
    if type(seq) is not int or type(device) is not str or type(metric) is not str:
        return None
    if not (0 <= seq <= MAX_SEQ) or _DEVICE_RE.fullmatch(device) is None or _AGENT_RE.fullmatch(agent) is None:
        return None
    entry = CATALOGUE.get(metric)
    if entry is None or not entry.is_plausible(value):
        return None
    if device_time is not None and (type(device_time) is not str or len(device_time) > 40):
        return None
    if len(flags) > MAX_FLAGS:
        return None
    for f in flags:
        if type(f) is not str or _FLAG_RE.fullmatch(f) is None:
            return None
    return _new_reading(
        {
            "agent_id": agent,
            "device_id": device,
            "seq": seq,
            "metric": metric,
            "value": value,
            "measured_at": measured_at,
            "device_time": device_time,
            "flags": frozenset(flags),
        }
    )


# seq, device_id, metric, value, measured_at, device_time, flags (sorted, distinct)
RowValues: TypeAlias = tuple[int, str, str, float, datetime, str | None, list[str]]

# The fast path takes times up to 9999-12-31 (datetime's range); later ones go the reference way.
_MAX_FAST_MICROS: Final = (datetime(9999, 12, 31, tzinfo=UTC) - _EPOCH) // timedelta(microseconds=1)


def _valid(value: str, memo: set[str], pattern: re.Pattern[str], limit: int) -> bool:
    if value in memo:
        return True
    if pattern.fullmatch(value) is None:
        return False
    if len(memo) >= limit:
        memo.clear()
    memo.add(value)
    return True


@dataclass(frozen=True, slots=True)
class BodyValues:
    """A validated readings body as plain values (:meth:`RowsValidator.decode_values`): what ingest
    stores."""

    sent_at: datetime
    rows: list[RowValues]
    gaps: tuple[SeqRange, ...]


class RowsValidator:
    """Readings bodies validated into plain row tuples, with the identifiers already checked memoised.

    An agent sends the same few device ids and flags in every envelope, and a set lookup is several
    times cheaper than the regular expression; each memo holds at most ``memo_max`` entries (it
    starts afresh when full), so hostile identifiers cannot grow it.
    """

    __slots__ = ("_devices", "_flags", "_memo_max")

    def __init__(self, *, memo_max: int = 4096) -> None:
        self._devices: set[str] = set()
        self._flags: set[str] = set()
        self._memo_max = memo_max

    def decode_values(self, body: bytes, *, topic: Topic) -> BodyValues:
        """:func:`decode_batch` without building a :class:`Reading` per row: the same checks in the
        same order, the same errors (:meth:`rows_values`), plain tuples out."""
        rows, gaps, doc = _body(body, topic)
        try:
            values = self.rows_values(topic.agent, rows)
            gap_ranges = tuple(gap_from_row(g) for g in gaps[:MAX_READINGS])
        except ContractError as exc:
            raise MalformedEnvelope(f"invalid reading ({first_error(exc)})") from exc
        return BodyValues(from_micros(doc.get("sent")), values, gap_ranges)

    def rows_values(self, agent: AgentId, rows: list[Any]) -> list[RowValues]:
        """Validate every row of a readings body as :func:`reading_from_row` does; return plain values.

        The fast path accepts only canonical wire types and exactly what ``_fast_reading`` accepts;
        for anything else the row goes through :func:`reading_from_row` (and so through the dataclass's
        checks when needed), which raises its error or returns the reading whose values are used.
        """
        fast_agent = _AGENT_RE.fullmatch(agent) is not None
        catalogue, devices, flags_memo, limit = CATALOGUE, self._devices, self._flags, self._memo_max
        out: list[RowValues] = []
        for row in rows:
            if fast_agent and type(row) is list and len(row) == 7:
                seq, device, metric, value, measured, device_time, flags = row
                tv = type(value)
                if (
                    type(seq) is int
                    and 0 <= seq <= MAX_SEQ
                    and type(device) is str
                    and (device in devices or _valid(device, devices, _DEVICE_RE, limit))
                    and type(metric) is str
                    and (tv is float or tv is int)
                    and type(measured) is int
                    and 0 <= measured < _MAX_FAST_MICROS
                    and (device_time is None or (type(device_time) is str and len(device_time) <= 40))
                    and type(flags) is list
                    and len(flags) <= MAX_FLAGS
                ):
                    entry = catalogue.get(metric)
                    fvalue = _as_float(value)
                    if entry is not None and entry.is_plausible(fvalue):
                        for f in flags:
                            if type(f) is not str or not (f in flags_memo or _valid(f, flags_memo, _FLAG_RE, limit)):
                                break
                        else:
                            out.append(
                                (
                                    seq,
                                    device,
                                    metric,
                                    fvalue,
                                    _EPOCH + timedelta(microseconds=measured),
                                    device_time,
                                    flags if len(flags) < 2 else sorted(set(flags)),
                                )
                            )
                            continue
            r = reading_from_row(agent, row)  # the reference path: raises, or accepts a non-canonical row
            out.append((r.seq, r.device_id, r.metric, r.value, r.measured_at, r.device_time, sorted(r.flags)))
        return out


def _body(body: bytes, topic: Topic) -> tuple[list[Any], list[Any], dict[Any, Any]]:
    """The structural checks of a readings body: the rows, the gaps and the whole map."""
    doc = untrusted.loads(body, "body")
    if not isinstance(doc, dict):
        raise MalformedEnvelope("body is not a map")
    if not untrusted.is_int(doc.get("v"), ENVELOPE_VERSION):
        raise UnsupportedVersion(doc.get("v"))
    if doc.get("org") != topic.org:
        raise BindingMismatch("organisation")
    if doc.get("agent") != topic.agent:
        raise BindingMismatch("agent")
    rows, gaps = doc.get("r"), doc.get("gaps", [])
    if not isinstance(rows, list) or not isinstance(gaps, list) or len(rows) > MAX_READINGS:
        raise MalformedEnvelope("bad readings list")
    return rows, gaps, doc


def decode_batch(body: bytes, *, topic: Topic) -> ReadingBatch:
    """Parse and validate a readings body; org and agent must match ``topic``.

    Raises :class:`MalformedEnvelope` (reason ``malformed``) for shape errors and for readings that
    violate the contract (unknown metric, implausible value, naive or absurd time).
    """
    rows, gaps, doc = _body(body, topic)
    try:
        readings = tuple(reading_from_row(topic.agent, row) for row in rows)
        gap_ranges = tuple(gap_from_row(g) for g in gaps[:MAX_READINGS])
    except ContractError as exc:
        raise MalformedEnvelope(f"invalid reading ({first_error(exc)})") from exc
    return ReadingBatch(topic.org, topic.agent, from_micros(doc.get("sent")), readings, gap_ranges)


_READING_FIELDS: Final = tuple(f.name for f in fields(Reading))
_SET: Final = object.__setattr__


def _new_reading(values: dict[str, Any]) -> Reading:
    """A :class:`Reading` from already validated values, without running ``__post_init__``'s checks a
    second time (it is called for every reading at ingest). The equality of both paths is tested."""
    reading = object.__new__(Reading)
    for name in _READING_FIELDS:
        _SET(reading, name, values[name])
    return reading


def declared_sequences(body: bytes) -> list[tuple[int, int]]:
    """The sequence ranges a *verified* readings body names (its rows and its gaps), leniently.

    For a body whose signature verified but which fails validation (an implausible value, a
    broken row): those sequence numbers will never be accepted, so the receipt may count them as
    resolved and the agent's outbox can drain. Anything unreadable is simply skipped.
    """
    try:
        doc = cbor2.loads(body)
    except Exception:  # noqa: BLE001 - any decoder failure (ingest.untrusted): nothing declared
        return []
    if not isinstance(doc, dict):
        return []
    out: list[tuple[int, int]] = []
    rows, gaps = doc.get("r"), doc.get("gaps")
    for row in rows[:MAX_READINGS] if isinstance(rows, list) else []:
        if isinstance(row, list) and row and _is_seq(row[0]):
            out.append((row[0], row[0]))
    for gap in gaps[:MAX_READINGS] if isinstance(gaps, list) else []:
        if isinstance(gap, list) and len(gap) in (2, 3) and _is_seq(gap[0]) and _is_seq(gap[1]) and gap[0] <= gap[1]:
            out.append((gap[0], gap[1]))
    return out


def _is_seq(x: object) -> bool:
    return type(x) is int and 0 <= x <= MAX_SEQ


def gap_from_row(g: object) -> SeqRange:
    """``[first, last]`` or ``[first, last, reason]`` (a short lower-case word: :class:`SeqRange`)."""
    if not (isinstance(g, list) and len(g) in (2, 3)):
        raise MalformedEnvelope("bad gap")
    if len(g) == 3 and not isinstance(g[2], str):
        raise MalformedEnvelope("bad gap reason")
    return SeqRange(first=g[0], last=g[1], reason=g[2] if len(g) == 3 else None)


def first_error(exc: ContractError) -> str:
    """Where the validation error is and what kind it is; never the input value (PHI)."""
    if isinstance(exc, InvalidField):
        return f"{exc.field[:80]}: {exc.code[:40]}"
    return f"reading: {exc.reason[:40]}"

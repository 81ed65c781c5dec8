"""``Reading``: one measured value as the edge hands it to the server.

A reading is patient-independent: it names the agent and the device, and the server maps the agent
to a patient at ingest time. Values are in the metric's canonical UCUM unit and are checked against
the catalogue's plausible range on construction; times are timezone-aware UTC.

The ``(agent_id, seq, measured_at)`` triple identifies a reading everywhere (the dedup key):
``seq`` is the agent's own monotonic sequence number, persisted on the Pi and never reused.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Final

from rpm_core.checks import aware, fail, integer, number, text
from rpm_core.errors import UnknownMetric
from rpm_core.ids import AgentId, DeviceId, agent_id, device_id
from rpm_core.metrics import CATALOGUE, check_value

__all__ = ["FLAG_PATTERN", "GAP_REASONS", "MAX_FLAGS", "MAX_SEQ", "Reading", "SeqRange"]

MAX_SEQ: Final = 2**63 - 1
MAX_FLAGS: Final = 16
GAP_REASONS: Final = frozenset({"outbox_overflow", "disk_full", "quarantined"})
# A flag: 1 to 48 characters of this alphabet.
FLAG_PATTERN: Final = re.compile(r"[a-z0-9_:.-]{1,48}")
_REASON: Final = re.compile(r"[a-z_]+")
_SET = object.__setattr__


def _flags(v: object) -> frozenset[str]:
    if not isinstance(v, frozenset | set | list | tuple):
        fail("flags", "frozen_set_type", "must be a set of flags")
    out = frozenset(v)
    if len(out) > MAX_FLAGS:
        fail("flags", "too_long", f"must have at most {MAX_FLAGS} flags")
    for flag in out:
        if not isinstance(flag, str) or FLAG_PATTERN.fullmatch(flag) is None:
            fail("flags", "string_pattern_mismatch", f"each flag must match {FLAG_PATTERN.pattern}")
    return out


@dataclass(frozen=True, slots=True)
class Reading:
    """Checked on construction; a refused field raises a :class:`~rpm_core.errors.ContractError`
    (``InvalidField``, ``InvalidIdentifier``, ``UnknownMetric``, ``ImplausibleValue``) whose message
    never carries the value (PHI)."""

    agent_id: AgentId
    device_id: DeviceId
    seq: int
    metric: str
    value: float
    measured_at: datetime
    # The timestamp exactly as the device reported it (ISO 8601, no offset), when it sent one.
    device_time: str | None = None
    flags: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        _SET(self, "agent_id", agent_id(self.agent_id))
        _SET(self, "device_id", device_id(self.device_id))
        integer("seq", self.seq, ge=0, le=MAX_SEQ)
        metric = text("metric", self.metric)
        if metric not in CATALOGUE:
            raise UnknownMetric(metric)
        value = number("value", self.value)
        _SET(self, "value", value)
        _SET(self, "measured_at", aware("measured_at", self.measured_at))
        if self.device_time is not None:
            text("device_time", self.device_time, max_length=40)
        _SET(self, "flags", _flags(self.flags))
        check_value(metric, value)

    @property
    def unit(self) -> str:
        return CATALOGUE[self.metric].unit

    @property
    def key(self) -> tuple[str, int, datetime]:
        """The dedup key (agent, sequence, measured time)."""
        return (self.agent_id, self.seq, self.measured_at)


@dataclass(frozen=True, slots=True)
class SeqRange:
    """An inclusive range of sequence numbers the agent will never deliver, and why when it says.

    Reasons the agent gives today (:data:`GAP_REASONS`): ``outbox_overflow`` (the outbox held its
    maximum), ``disk_full`` (evicted, or never written, because the disk was full) and
    ``quarantined`` (a stored row that no longer opens: moved aside, see the edge outbox). The
    server keeps any reason of the right shape, so a newer agent's reason is not an error.
    """

    first: int
    last: int
    reason: str | None = None

    def __post_init__(self) -> None:
        integer("first", self.first, ge=0, le=MAX_SEQ)
        integer("last", self.last, ge=0, le=MAX_SEQ)
        if self.reason is not None:
            text("reason", self.reason, min_length=1, max_length=32, pattern=_REASON)
        if self.last < self.first:
            fail("last", "value_error", "gap range must have first <= last")

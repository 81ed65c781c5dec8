"""``Reading``: one measured value as the edge hands it to the server.

A reading is patient-independent: it names the agent and the device, and the server maps the agent
to a patient at ingest time. Values are in the metric's canonical UCUM unit and are checked against
the catalogue's plausible range on construction; times are timezone-aware UTC.

The ``(agent_id, seq, measured_at)`` triple identifies a reading everywhere (the dedup key):
``seq`` is the agent's own monotonic sequence number, persisted on the Pi and never reused.
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import Annotated, Final

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator

from rpm_core.clock import ensure_utc
from rpm_core.ids import AgentId, DeviceId, agent_id, device_id
from rpm_core.metrics import CATALOGUE, check_value

__all__ = ["GAP_REASONS", "MAX_FLAGS", "MAX_SEQ", "Flag", "Reading", "SeqRange"]

MAX_SEQ: Final = 2**63 - 1
MAX_FLAGS: Final = 16
GAP_REASONS: Final = frozenset({"outbox_overflow", "disk_full", "quarantined"})

Flag = Annotated[str, Field(min_length=1, max_length=48, pattern=r"^[a-z0-9_:.-]+$")]


class Reading(BaseModel):
    # hide_input_in_errors: a ValidationError's text must never carry a value (PHI) into a log.
    model_config = ConfigDict(frozen=True, extra="forbid", hide_input_in_errors=True)

    agent_id: Annotated[AgentId, AfterValidator(agent_id)]
    device_id: Annotated[DeviceId, AfterValidator(device_id)]
    seq: Annotated[int, Field(ge=0, le=MAX_SEQ)]
    metric: str
    value: float
    measured_at: datetime
    # The timestamp exactly as the device reported it (ISO 8601, no offset), when it sent one.
    device_time: Annotated[str | None, Field(max_length=40)] = None
    flags: Annotated[frozenset[Flag], Field(max_length=MAX_FLAGS)] = frozenset()

    @field_validator("metric")
    @classmethod
    def _known_metric(cls, v: str) -> str:
        if v not in CATALOGUE:
            raise ValueError(f"unknown metric {v[:40]!r}")
        return v

    @field_validator("measured_at")
    @classmethod
    def _utc(cls, v: datetime) -> datetime:
        return ensure_utc(v)

    @model_validator(mode="after")
    def _plausible(self) -> Reading:
        if not math.isfinite(self.value):
            raise ValueError("value must be a finite number")
        check_value(self.metric, self.value)
        return self

    @property
    def unit(self) -> str:
        return CATALOGUE[self.metric].unit

    @property
    def key(self) -> tuple[str, int, datetime]:
        """The dedup key (agent, sequence, measured time)."""
        return (self.agent_id, self.seq, self.measured_at)


class SeqRange(BaseModel):
    """An inclusive range of sequence numbers the agent will never deliver, and why when it says.

    Reasons the agent gives today (:data:`GAP_REASONS`): ``outbox_overflow`` (the outbox held its
    maximum), ``disk_full`` (evicted, or never written, because the disk was full) and
    ``quarantined`` (a stored row that no longer opens: moved aside, see the edge outbox). The
    server keeps any reason of the right shape, so a newer agent's reason is not an error.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    first: Annotated[int, Field(ge=0, le=MAX_SEQ)]
    last: Annotated[int, Field(ge=0, le=MAX_SEQ)]
    reason: Annotated[str, Field(min_length=1, max_length=32, pattern=r"^[a-z_]+$")] | None = None

    @model_validator(mode="after")
    def _ordered(self) -> SeqRange:
        if self.last < self.first:
            raise ValueError("gap range must have first <= last")
        return self

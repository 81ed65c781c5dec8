"""The vocabulary every rule, model and the engine share: observations, severities, candidates.

A rule looks at one patient's recent observations and returns an :class:`Outcome`: the
:class:`Candidate` alerts it would raise, plus the rule keys it evaluated and found *clear* (the
lifecycle auto-resolves an alert whose rule stays clear long enough). A rule that could not decide
(too little data, a reading awaiting confirmation) reports neither.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

from alerts.errors import AlertsConfigError

__all__ = [
    "EVIDENCE_CAP",
    "KINDS",
    "Candidate",
    "Kind",
    "Obs",
    "Outcome",
    "Severity",
    "evidence_json",
    "merge_outcomes",
]

# Aggregate rules (7-day means) could cite dozens of readings; keep the most recent ones.
EVIDENCE_CAP: Final = 40


class Severity(enum.IntEnum):
    """Ordered: a larger value is worse. Stored and printed by :attr:`label`."""

    LOW = 1
    MEDIUM = 2
    HIGH = 3
    CRITICAL = 4

    @property
    def label(self) -> str:
        return self.name.lower()

    @classmethod
    def parse(cls, text: str) -> Severity:
        try:
            return cls[text.upper()]
        except KeyError:
            raise AlertsConfigError(f"unknown severity {text!r}") from None


class Kind(enum.StrEnum):
    THRESHOLD = "threshold"
    NEWS2 = "news2"
    TREND = "trend"
    MISSING_DATA = "missing_data"
    ANOMALY = "anomaly"


KINDS: Final = frozenset(k.value for k in Kind)


@dataclass(frozen=True, slots=True, order=True)
class Obs:
    """One reading as the rules see it: when, what, how much (canonical unit)."""

    time: datetime
    metric: str
    value: float

    def to_json(self) -> dict[str, Any]:
        return {"time": self.time.isoformat(), "metric": self.metric, "value": self.value}


def evidence_json(evidence: Iterable[Obs]) -> list[dict[str, Any]]:
    items = sorted(evidence)
    return [o.to_json() for o in items[-EVIDENCE_CAP:]]


@dataclass(frozen=True, slots=True)
class Candidate:
    """An alert a rule would raise now. ``rule`` is the key of "one open alert per patient and rule".

    ``unconfirmed``: the values behind it have not been confirmed by a repeat measurement yet (a
    single reading in a band that asks for two, a NEWS2 aggregate built from single readings). The
    lifecycle opens such an alert marked unconfirmed and asks the patient to repeat the
    measurements; the repeat confirms it or, found clear, auto-resolves it.
    """

    rule: str
    kind: Kind
    metric: str | None
    severity: Severity
    summary: str
    evidence: tuple[Obs, ...]
    detail: Mapping[str, Any] = field(default_factory=dict)
    unconfirmed: bool = False


@dataclass(frozen=True, slots=True)
class Outcome:
    candidates: tuple[Candidate, ...] = ()
    clear: frozenset[str] = frozenset()

    @property
    def triggered(self) -> frozenset[str]:
        return frozenset(c.rule for c in self.candidates)


def merge_outcomes(outcomes: Iterable[Outcome]) -> Outcome:
    """Combine outcomes; for one rule key the worst candidate wins (a confirmed one over an unconfirmed
    one of the same severity) and a trigger beats a clear."""
    best: dict[str, Candidate] = {}
    clear: set[str] = set()
    for outcome in outcomes:
        if outcome.clear:
            clear |= outcome.clear
        for c in outcome.candidates:
            if c.rule not in best or (c.severity, not c.unconfirmed) > (
                best[c.rule].severity,
                not best[c.rule].unconfirmed,
            ):
                best[c.rule] = c
    return Outcome(tuple(best.values()), frozenset(clear - best.keys()))

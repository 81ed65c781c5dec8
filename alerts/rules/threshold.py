"""Threshold rule: per-metric bands with severities, confirmed so that one artefact does not page.

For each metric and direction (``low``: ``<``/``<=`` bands, ``high``: ``>``/``>=`` bands) the rule
looks at the latest reading at the evaluation time:

- in no band of that direction: the rule key ``threshold:<metric>:<direction>`` is *clear*;
- in one or more bands: the worst band whose confirmation holds fires — ``confirm`` of its last
  ``of`` readings (taken within ``within_h`` hours of the latest) are in the band, or the readings
  have stayed in the band for ``sustain_min`` minutes. A band with ``confirm = 1`` (a clearly
  dangerous single value) fires on one reading;
- in bands none of which is confirmed yet: an *unconfirmed* candidate at the worst of those bands,
  asking the patient to repeat the measurement now (``detail.remeasure``); the repeat confirms it
  or, out of every band, clears (and so auto-resolves) it. With ``remeasure_unconfirmed`` off the
  rule says nothing instead and waits for the next reading.

A baseline a clinician accepted as the patient's own (``PatientConfig.baselines``, keyed by rule)
turns off the bands of that rule that the patient's usual value lies in — never a critical band:
the patient's normal is not an alert, a departure from it beyond the next line still is.
"""

from __future__ import annotations

import math
import weakref
from bisect import bisect_right
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final

from alerts.config import Band, PatientConfig
from alerts.history import History
from alerts.model import Candidate, Kind, Obs, Outcome, Severity

__all__ = ["confirmed", "evaluate_thresholds", "rule_key"]

_STREAK_LIMIT: Final = 200


def rule_key(metric: str, direction: str) -> str:
    return f"threshold:{metric}:{direction}"


def confirmed(history: History, metric: str, at: datetime, band: Band) -> tuple[Obs, ...]:
    """The readings that confirm ``band`` as of ``at`` (empty when it is not confirmed)."""
    recent = history.last(metric, at, band.last)
    if not recent or not band.contains(recent[-1].value):
        return ()
    window = [o for o in recent if recent[-1].time - o.time <= timedelta(hours=band.within_h)]
    inside = [o for o in window if band.contains(o.value)]
    if len(inside) >= band.confirm:
        return tuple(inside[-band.confirm :])
    if band.sustain_min is not None:
        streak = _streak(history.last(metric, at, _STREAK_LIMIT), band)
        if len(streak) >= 2 and streak[-1].time - streak[0].time >= timedelta(minutes=band.sustain_min):
            return tuple(streak)
    return ()


def _streak(recent: Sequence[Obs], band: Band) -> list[Obs]:
    """The unbroken run of in-band readings that ends with the latest one."""
    run: list[Obs] = []
    for o in reversed(recent):
        if not band.contains(o.value):
            break
        run.append(o)
    run.reverse()
    return run


def _detail(band: Band, evidence: Sequence[Obs]) -> dict[str, Any]:
    return {
        "direction": band.direction,
        "op": band.op,
        "threshold": band.value,
        "confirm": band.confirm,
        "of": band.last,
        "within_h": band.within_h,
        "sustain_min": band.sustain_min,
        "readings_in_band": len(evidence),
    }


def _usable(bands: Sequence[Band], baseline: float | None) -> list[Band]:
    """The bands still in force once the patient's accepted baseline is taken as normal."""
    if baseline is None:
        return list(bands)
    return [b for b in bands if b.level is Severity.CRITICAL or not b.contains(baseline)]


def _evaluate_direction(
    history: History, metric: str, at: datetime, bands: Sequence[Band], latest: Obs, *, remeasure: bool
) -> Candidate | bool | None:
    """A candidate, ``True`` when clear, ``None`` when waiting for confirmation."""
    hit = sorted((b for b in bands if b.contains(latest.value)), key=lambda b: b.level, reverse=True)
    if not hit:
        return True
    for band in hit:
        evidence = confirmed(history, metric, at, band)
        if evidence:
            return Candidate(
                rule=rule_key(metric, band.direction),
                kind=Kind.THRESHOLD,
                metric=metric,
                severity=band.level,
                summary=band.label or f"{metric} {band.op} {band.value:g}",
                evidence=evidence,
                detail=_detail(band, evidence),
            )
    if not remeasure:
        return None
    worst = hit[0]
    return Candidate(
        rule=rule_key(metric, worst.direction),
        kind=Kind.THRESHOLD,
        metric=metric,
        severity=worst.level,
        summary=f"unconfirmed: {worst.label or f'{metric} {worst.op} {worst.value:g}'} (re-measure requested)",
        evidence=(latest,),
        detail={**_detail(worst, (latest,)), "awaiting_confirmation": True, "remeasure": [metric]},
        unconfirmed=True,
    )


@dataclass(frozen=True, slots=True)
class _Side:
    """One direction of a metric's bands as they apply to a patient."""

    key: str
    bands: tuple[Band, ...]  # usable bands, worst first (stable: equal levels in configured order)
    low: bool
    # Some band contains v exactly when ``v < strict or v <= loose`` (low; high: ``>``, ``>=``).
    strict: float
    loose: float

    def hit(self, v: float) -> bool:
        if self.low:
            return v < self.strict or v <= self.loose
        return v > self.strict or v >= self.loose


def _side(key: str, bands: Sequence[Band], low: bool) -> _Side:
    # A band at NaN contains nothing (every comparison with NaN is false): it moves no edge.
    strict = [b.value for b in bands if b.op in ("<", ">") and not math.isnan(b.value)]
    loose = [b.value for b in bands if b.op in ("<=", ">=") and not math.isnan(b.value)]
    pick, none = (max, -math.inf) if low else (min, math.inf)
    ordered = tuple(sorted(bands, key=lambda b: b.level, reverse=True))
    return _Side(key, ordered, low, pick(strict, default=none), pick(loose, default=none))


# Per metric: its directions in evaluation order, each a _Side or the key of a direction always clear
# (the patient's accepted baseline lies in every band of it).
_Plan = dict[str, tuple[_Side | str, ...]]
_PLANS: dict[int, tuple[weakref.ref[PatientConfig], _Plan]] = {}


def _plan(config: PatientConfig) -> _Plan:
    """The bands of ``config`` arranged for evaluation (kept per configuration object)."""
    held = _PLANS.get(id(config))
    if held is not None and held[0]() is config:
        return held[1]
    plan: _Plan = {}
    for metric, bands in config.bands.items():
        sides: list[_Side | str] = []
        for direction in ("low", "high"):
            key = rule_key(metric, direction)
            side = [b for b in bands if b.direction == direction]
            if not side or not config.enabled(key):
                continue
            side = _usable(side, config.baselines.get(key))
            sides.append(_side(key, side, direction == "low") if side else key)
        if sides:
            plan[metric] = tuple(sides)
    if len(_PLANS) > 10_000:
        _PLANS.clear()
    _PLANS[id(config)] = (weakref.ref(config), plan)
    return plan


def evaluate_thresholds(history: History, at: datetime, metrics: Iterable[str], config: PatientConfig) -> Outcome:
    """Evaluate the bands of ``metrics`` (the metrics that have a new reading at ``at``)."""
    candidates: list[Candidate] = []
    clear: set[str] = set()
    plan = _plan(config)
    for metric in sorted(set(metrics)):
        sides = plan.get(metric)
        if sides is None:
            continue
        times, values, obs = history.series(metric)
        i = bisect_right(times, at)
        if not i:
            continue
        v = values[i - 1]
        for side in sides:
            if isinstance(side, str):  # the patient's accepted baseline lies in every band: their normal
                clear.add(side)
                continue
            if not side.hit(v):
                clear.add(side.key)
                continue
            result = _evaluate_direction(
                history, metric, at, side.bands, obs[i - 1], remeasure=config.remeasure_unconfirmed
            )
            if result is True:
                clear.add(side.key)
            elif isinstance(result, Candidate):
                candidates.append(result)
    return Outcome(tuple(candidates), frozenset(clear))

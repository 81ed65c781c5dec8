"""Threshold rule: per-metric bands with severities, confirmed so that one artefact does not page.

For each metric and direction (``low``: ``<``/``<=`` bands, ``high``: ``>``/``>=`` bands) the rule
looks at the latest reading at the evaluation time:

- in no band of that direction: the rule key ``threshold:<metric>:<direction>`` is *clear*;
- in one or more bands: the worst band whose confirmation holds fires — its last ``confirm``
  readings are all in the band within ``within_h`` hours, or the readings have stayed in the band
  for ``sustain_min`` minutes. A band with ``confirm = 1`` (a clearly dangerous single value) fires
  on one reading;
- in a band that is not confirmed yet: neither (waiting for the re-measurement).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import Final

from alerts.config import Band, PatientConfig
from alerts.history import History
from alerts.model import Candidate, Kind, Obs, Outcome

__all__ = ["confirmed", "evaluate_thresholds", "rule_key"]

_STREAK_LIMIT: Final = 200


def rule_key(metric: str, direction: str) -> str:
    return f"threshold:{metric}:{direction}"


def confirmed(history: History, metric: str, at: datetime, band: Band) -> tuple[Obs, ...]:
    """The readings that confirm ``band`` as of ``at`` (empty when it is not confirmed)."""
    recent = history.last(metric, at, max(band.confirm, 1))
    if not recent or not band.contains(recent[-1].value):
        return ()
    if (
        len(recent) == band.confirm
        and all(band.contains(o.value) for o in recent)
        and recent[-1].time - recent[0].time <= timedelta(hours=band.within_h)
    ):
        return tuple(recent)
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


def _evaluate_direction(
    history: History, metric: str, at: datetime, bands: Sequence[Band], latest: Obs
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
                detail={
                    "direction": band.direction,
                    "op": band.op,
                    "threshold": band.value,
                    "confirm": band.confirm,
                    "within_h": band.within_h,
                    "sustain_min": band.sustain_min,
                    "readings_in_band": len(evidence),
                },
            )
    return None


def evaluate_thresholds(history: History, at: datetime, metrics: Iterable[str], config: PatientConfig) -> Outcome:
    """Evaluate the bands of ``metrics`` (the metrics that have a new reading at ``at``)."""
    candidates: list[Candidate] = []
    clear: set[str] = set()
    for metric in sorted(set(metrics)):
        bands = config.bands.get(metric, ())
        latest = history.latest(metric, at)
        if not bands or latest is None:
            continue
        for direction in ("low", "high"):
            key = rule_key(metric, direction)
            side = [b for b in bands if b.direction == direction]
            if not side or not config.enabled(key):
                continue
            result = _evaluate_direction(history, metric, at, side, latest)
            if result is True:
                clear.add(key)
            elif isinstance(result, Candidate):
                candidates.append(result)
    return Outcome(tuple(candidates), frozenset(clear))

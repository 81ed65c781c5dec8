"""Trend rules: heart-failure fluid gain and blood pressure above the patient's goal.

``trend:weight_gain`` — the gain over each horizon (1, 3 and 7 days by default) is the latest weight
minus the lowest weight measured between ``horizon + 12 h`` and 12 h before it (a same-day
re-weighing is not a baseline). A weighing further than ``max_plausible_kg_per_day`` per day from the
median of the patient's previous weighings is a measuring artefact (someone else on the scale) and
ignored. The current weight is the lowest of the last ``weight_confirm`` weighings (taken within 72
hours), so one heavy-clothes reading does not alert: the next weighing confirms or refutes it. A 1-day gain is
``medium``; a 3- or 7-day gain ``high``.

``trend:bp_goal`` — the mean of the home readings of the last ``bp_window_days`` (at least
``bp_min_readings`` spanning ``bp_min_span_days``) at or above the patient's goal (default 130/80,
ACC/AHA home monitoring) is ``low``; at or above stage 2 (140/90) ``medium``.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from statistics import fmean, median
from typing import Final

from alerts.config import PatientConfig, TrendConfig
from alerts.history import History
from alerts.model import Candidate, Kind, Obs, Outcome, Severity

__all__ = [
    "BP_RULE",
    "CONFIRM_SPAN",
    "PLAUSIBILITY_SPAN",
    "WEIGHT_RULE",
    "evaluate_bp_goal",
    "evaluate_weight_gain",
    "plausible_weight",
    "weight_gain",
]

WEIGHT_RULE: Final = "trend:weight_gain"
BP_RULE: Final = "trend:bp_goal"
_SAME_DAY: Final = timedelta(hours=12)
_EPSILON: Final = timedelta(microseconds=1)
PLAUSIBILITY_SPAN: Final = timedelta(days=4)
# Weighings further apart than this do not confirm each other.
CONFIRM_SPAN: Final = timedelta(hours=72)


def plausible_weight(history: History, o: Obs, cfg: TrendConfig) -> bool:
    """False for a weighing that jumps away from the patient's recent weights faster than any fluid
    shift could (somebody else on the scale); judged against the median of up to five weighings in
    the ``PLAUSIBILITY_SPAN`` before it."""
    before = history.window("body_weight", o.time - PLAUSIBILITY_SPAN, o.time - _EPSILON)[-5:]
    if len(before) < 2:
        return True
    elapsed_days = max((o.time - before[-1].time) / timedelta(days=1), 1.0)
    return abs(o.value - median(b.value for b in before)) <= cfg.max_plausible_kg_per_day * elapsed_days


def weight_gain(
    history: History, at: datetime, days: int, cfg: TrendConfig, *, confirm: int = 1
) -> tuple[float, Obs, tuple[Obs, ...]] | None:
    """``(gain_kg, baseline, current readings)`` over ``days`` as of ``at``, or None.

    The current weight is the lowest of the last ``confirm`` weighings (taken within
    ``CONFIRM_SPAN`` of each other, all plausible); the baseline the lowest plausible weighing
    between ``days`` + 12 h and 12 h before the first of them.
    """
    recent = history.last("body_weight", at, confirm)
    if len(recent) < confirm or recent[-1].time - recent[0].time > CONFIRM_SPAN:
        return None
    if not all(plausible_weight(history, o, cfg) for o in recent):
        return None
    first = recent[0]
    start = first.time - timedelta(days=days) - _SAME_DAY
    refs = [
        o for o in history.window("body_weight", start, first.time - _SAME_DAY) if plausible_weight(history, o, cfg)
    ]
    if not refs:
        return None
    base = min(refs, key=lambda o: o.value)
    return min(o.value for o in recent) - base.value, base, tuple(recent)


def evaluate_weight_gain(history: History, at: datetime, config: PatientConfig) -> Outcome:
    if not config.enabled(WEIGHT_RULE):
        return Outcome()
    cfg = config.trend
    if history.latest("body_weight", at) is None:
        return Outcome()
    fired: dict[int, tuple[float, Obs, tuple[Obs, ...]]] = {}
    pending = False
    for days, limit in sorted(cfg.weight_gain_kg.items()):
        confirmed = weight_gain(history, at, days, cfg, confirm=cfg.weight_confirm)
        if confirmed is not None and confirmed[0] > limit:
            fired[days] = confirmed
            continue
        latest = weight_gain(history, at, days, cfg)
        pending = pending or (latest is not None and latest[0] > limit)
    if not fired:
        return Outcome() if pending else Outcome(clear=frozenset({WEIGHT_RULE}))
    severity = Severity.HIGH if any(d > 1 for d in fired) else Severity.MEDIUM
    worst = max(fired, key=lambda d: (d > 1, fired[d][0]))
    gain, base, recent = fired[worst]
    return Outcome(
        (
            Candidate(
                rule=WEIGHT_RULE,
                kind=Kind.TREND,
                metric="body_weight",
                severity=severity,
                summary=f"weight gain {gain:.1f} kg in {worst} day(s)",
                evidence=tuple(sorted({base, *recent})),
                detail={
                    "gains": {
                        f"{d}d": {"gain_kg": round(g[0], 2), "limit_kg": cfg.weight_gain_kg[d]}
                        for d, g in fired.items()
                    },
                    "confirmed_by_readings": len(recent),
                },
            ),
        )
    )


def evaluate_bp_goal(history: History, at: datetime, config: PatientConfig) -> Outcome:
    if not config.enabled(BP_RULE):
        return Outcome()
    cfg = config.trend
    start = at - timedelta(days=cfg.bp_window_days)
    systolic = history.window("bp_systolic", start, at)
    diastolic = history.window("bp_diastolic", start, at)
    n = min(len(systolic), len(diastolic))
    if n < cfg.bp_min_readings:
        return Outcome()
    if systolic[-1].time - systolic[0].time < timedelta(days=cfg.bp_min_span_days):
        return Outcome()
    mean_s, mean_d = fmean(o.value for o in systolic), fmean(o.value for o in diastolic)
    goal, stage2 = cfg.bp_goal, cfg.bp_stage2
    above_s, above_d = mean_s >= goal.systolic, mean_d >= goal.diastolic
    if not (above_s or above_d):
        return Outcome(clear=frozenset({BP_RULE}))
    severity = Severity.MEDIUM if mean_s >= stage2.systolic or mean_d >= stage2.diastolic else Severity.LOW
    return Outcome(
        (
            Candidate(
                rule=BP_RULE,
                kind=Kind.TREND,
                metric="bp_systolic" if above_s else "bp_diastolic",
                severity=severity,
                summary=f"{cfg.bp_window_days}-day mean blood pressure {mean_s:.0f}/{mean_d:.0f} above goal "
                f"{goal.systolic:.0f}/{goal.diastolic:.0f}",
                evidence=tuple(systolic) + tuple(diastolic),
                detail={
                    "mean_systolic": round(mean_s, 1),
                    "mean_diastolic": round(mean_d, 1),
                    "goal": {"systolic": goal.systolic, "diastolic": goal.diastolic},
                    "readings": n,
                    "window_days": cfg.bp_window_days,
                },
            ),
        )
    )

"""Trend rules: heart-failure fluid gain and blood pressure above the patient's goal.

``trend:weight_gain`` — the gain over each horizon (1, 3 and 7 days by default) is the current
weight minus a robust baseline: the median of the plausible weighings of the
``weight_baseline_days`` (3) before the horizon (up to 12 h after its start, never the same day as
the current weighing), so one low weighing does not turn an ordinary one into a gain. A weighing
further than ``max_plausible_kg_per_day`` per day from the median of the patient's previous
weighings is a measuring artefact (someone else on the scale) and ignored. The current weight is
the lowest of the last ``weight_confirm`` weighings (taken within 72 hours), so one heavy-clothes
reading does not alert: the next weighing confirms or refutes it. A 1-day gain is ``medium``; a 3-
or 7-day gain ``high``. Hysteresis: the rule is clear only once every gain is
``weight_clear_margin_kg`` below its limit.

``trend:bp_goal`` — home BP monitoring protocols (ESH 2010 and 2021, AHA/AMA 2020, Hypertension
Canada: duplicate morning and evening readings for up to 7 days, the first day discarded, the mean
of at least 12 readings): the mean of the readings of the last ``bp_window_days`` (7) without those
of its first day, at least ``bp_min_readings`` (12) spanning ``bp_min_span_days`` (3); a patient
taking single readings needs more days, so the window grows up to ``bp_max_window_days`` (14). At or
above the patient's goal (default 130/80, ACC/AHA home) is ``low``; at or above home hypertension
(135/85, the home equivalent of the office 140/90) ``medium``. Hysteresis: clear only once both means
are ``bp_clear_margin`` (3/2 mmHg) below the goal; a mean sitting on the line neither opens, clears
nor re-opens the alert.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from dataclasses import dataclass
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
    "WeightGain",
    "bp_protocol_readings",
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


@dataclass(frozen=True, slots=True)
class WeightGain:
    gain_kg: float
    baseline_kg: float  # the median of the baseline weighings
    baseline: tuple[Obs, ...]
    current: tuple[Obs, ...]


def weight_gain(history: History, at: datetime, days: int, cfg: TrendConfig, *, confirm: int = 1) -> WeightGain | None:
    """The gain over ``days`` as of ``at``, or None.

    The current weight is the lowest of the last ``confirm`` weighings (taken within
    ``CONFIRM_SPAN`` of each other, all plausible); the baseline the median of the plausible
    weighings of the ``weight_baseline_days`` before ``days`` ago (up to 12 h after it: a morning
    weighing ``days`` days earlier counts), so one low weighing does not make an ordinary one look
    like a gain.
    """
    recent = history.last("body_weight", at, confirm)
    if len(recent) < confirm or recent[-1].time - recent[0].time > CONFIRM_SPAN:
        return None
    if not all(plausible_weight(history, o, cfg) for o in recent):
        return None
    first = recent[0]
    end = first.time - timedelta(days=days) + _SAME_DAY
    start = first.time - timedelta(days=days + cfg.weight_baseline_days)
    refs = tuple(o for o in history.window("body_weight", start, end) if plausible_weight(history, o, cfg))
    if not refs:
        return None
    base = median(o.value for o in refs)
    return WeightGain(min(o.value for o in recent) - base, base, refs, tuple(recent))


def evaluate_weight_gain(history: History, at: datetime, config: PatientConfig) -> Outcome:
    if not config.enabled(WEIGHT_RULE):
        return Outcome()
    cfg = config.trend
    if history.latest("body_weight", at) is None:
        return Outcome()
    fired: dict[int, WeightGain] = {}
    hold = False  # a single unconfirmed gain, or a gain just below its limit (hysteresis)
    for days, limit in sorted(cfg.weight_gain_kg.items()):
        confirmed = weight_gain(history, at, days, cfg, confirm=cfg.weight_confirm)
        if confirmed is not None and confirmed.gain_kg > limit:
            fired[days] = confirmed
            continue
        latest = weight_gain(history, at, days, cfg)
        near = limit - cfg.weight_clear_margin_kg
        hold = hold or any(g is not None and g.gain_kg > near for g in (confirmed, latest))
    if not fired:
        return Outcome() if hold else Outcome(clear=frozenset({WEIGHT_RULE}))
    severity = Severity.HIGH if any(d > 1 for d in fired) else Severity.MEDIUM
    worst = max(fired, key=lambda d: (d > 1, fired[d].gain_kg))
    g = fired[worst]
    return Outcome(
        (
            Candidate(
                rule=WEIGHT_RULE,
                kind=Kind.TREND,
                metric="body_weight",
                severity=severity,
                summary=f"weight gain {g.gain_kg:.1f} kg in {worst} day(s)",
                evidence=tuple(sorted({*g.baseline, *g.current})),
                detail={
                    "gains": {
                        f"{d}d": {
                            "gain_kg": round(x.gain_kg, 2),
                            "limit_kg": cfg.weight_gain_kg[d],
                            "baseline_kg": round(x.baseline_kg, 2),
                        }
                        for d, x in fired.items()
                    },
                    "baseline": f"median of the weighings of the {cfg.weight_baseline_days:g} days before",
                    "confirmed_by_readings": len(g.current),
                },
            ),
        )
    )


def bp_protocol_readings(
    history: History, at: datetime, cfg: TrendConfig
) -> tuple[list[Obs], list[Obs], int, int] | None:
    """The readings a home BP average is taken over, as the home monitoring protocols ask (ESH,
    AHA/AMA): every reading of the last ``bp_window_days``, those of its first day discarded, at
    least ``bp_min_readings`` left spanning ``bp_min_span_days``. A window that holds too few (a
    patient taking one reading per session instead of two) grows a day at a time up to
    ``bp_max_window_days``. Returns (systolic, diastolic, window days, readings discarded) or None."""
    longest = max(cfg.bp_window_days, cfg.bp_max_window_days)
    all_s = history.window("bp_systolic", at - timedelta(days=longest), at)
    all_d = history.window("bp_diastolic", at - timedelta(days=longest), at)
    if len(all_s) < cfg.bp_min_readings or len(all_d) < cfg.bp_min_readings:
        return None
    times_s, times_d = [o.time for o in all_s], [o.time for o in all_d]
    for days in range(cfg.bp_window_days, longest + 1):
        start = at - timedelta(days=days)
        systolic, diastolic = all_s[bisect_right(times_s, start) :], all_d[bisect_right(times_d, start) :]
        if not systolic or not diastolic:
            continue
        discarded = 0
        if cfg.bp_discard_first_day:
            cut = min(systolic[0].time, diastolic[0].time) + timedelta(days=1)
            kept_s = systolic[bisect_left([o.time for o in systolic], cut) :]
            kept_d = diastolic[bisect_left([o.time for o in diastolic], cut) :]
            discarded = len(systolic) - len(kept_s)
            systolic, diastolic = kept_s, kept_d
        enough = min(len(systolic), len(diastolic)) >= cfg.bp_min_readings
        if enough and systolic[-1].time - systolic[0].time >= timedelta(days=cfg.bp_min_span_days):
            return systolic, diastolic, days, discarded
    return None


def evaluate_bp_goal(history: History, at: datetime, config: PatientConfig) -> Outcome:
    if not config.enabled(BP_RULE):
        return Outcome()
    cfg = config.trend
    selected = bp_protocol_readings(history, at, cfg)
    if selected is None:
        return Outcome()
    systolic, diastolic, days, discarded = selected
    mean_s, mean_d = fmean(o.value for o in systolic), fmean(o.value for o in diastolic)
    goal, stage2, margin, over = cfg.bp_goal, cfg.bp_stage2, cfg.bp_clear_margin, cfg.bp_open_margin
    above_s, above_d = mean_s >= goal.systolic + over.systolic, mean_d >= goal.diastolic + over.diastolic
    if not (above_s or above_d):
        # Hysteresis: a mean sitting on the line neither re-opens nor clears.
        if mean_s < goal.systolic - margin.systolic and mean_d < goal.diastolic - margin.diastolic:
            return Outcome(clear=frozenset({BP_RULE}))
        return Outcome()
    severity = Severity.MEDIUM if mean_s >= stage2.systolic or mean_d >= stage2.diastolic else Severity.LOW
    n = min(len(systolic), len(diastolic))
    return Outcome(
        (
            Candidate(
                rule=BP_RULE,
                kind=Kind.TREND,
                metric="bp_systolic" if above_s else "bp_diastolic",
                severity=severity,
                summary=f"{days}-day mean blood pressure {mean_s:.0f}/{mean_d:.0f} above goal "
                f"{goal.systolic:.0f}/{goal.diastolic:.0f}",
                evidence=tuple(systolic) + tuple(diastolic),
                detail={
                    "mean_systolic": round(mean_s, 1),
                    "mean_diastolic": round(mean_d, 1),
                    "goal": {"systolic": goal.systolic, "diastolic": goal.diastolic},
                    "readings": n,
                    "window_days": days,
                    "first_day_discarded": discarded,
                },
            ),
        )
    )

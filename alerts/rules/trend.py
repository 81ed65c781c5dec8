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
_DAY: Final = timedelta(days=1)
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


def _plausible_at(key: tuple[str, float], times: list[datetime], values: list[float], k: int) -> bool:
    """:func:`plausible_weight` of weighing ``k`` (``key``: the rule and the plausible kg per day)."""
    t = times[k]
    end = bisect_right(times, t - _EPSILON, 0, k)
    start = max(bisect_right(times, t - PLAUSIBILITY_SPAN, 0, end), end - 5)
    if end - start < 2:
        return True
    elapsed_days = max((t - times[end - 1]) / _DAY, 1.0)
    return abs(values[k] - median(values[start:end])) <= key[1] * elapsed_days


def _plausible(history: History, cfg: TrendConfig) -> list[bool]:
    """:func:`plausible_weight` of every weighing, by index (kept by the history: a weighing is judged
    by the ones before it only)."""
    key = (WEIGHT_RULE, cfg.max_plausible_kg_per_day)
    return history.derived("body_weight", key, _plausible_at, reach=PLAUSIBILITY_SPAN)


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
    times, values, obs = history.series("body_weight")
    i = bisect_right(times, at)
    lo = max(0, i - confirm)
    if i - lo < confirm or times[i - 1] - times[lo] > CONFIRM_SPAN:
        return None
    ok = _plausible(history, cfg)
    if not all(ok[lo:i]):
        return None
    first = times[lo]
    end = first - timedelta(days=days) + _SAME_DAY
    start = first - timedelta(days=days + cfg.weight_baseline_days)
    refs = [k for k in range(bisect_right(times, start), bisect_right(times, end)) if ok[k]]
    if not refs:
        return None
    base = median([values[k] for k in refs])
    return WeightGain(min(values[lo:i]) - base, base, tuple(obs[k] for k in refs), tuple(obs[lo:i]))


def evaluate_weight_gain(history: History, at: datetime, config: PatientConfig) -> Outcome:
    if not config.enabled(WEIGHT_RULE):
        return Outcome()
    cfg = config.trend
    if not bisect_right(history.times("body_weight"), at):
        return Outcome()
    fired: dict[int, WeightGain] = {}
    hold = False  # a single unconfirmed gain, or a gain just below its limit (hysteresis)
    for days, limit in sorted(cfg.weight_gain_kg.items()):
        confirmed = weight_gain(history, at, days, cfg, confirm=cfg.weight_confirm)
        if confirmed is not None and confirmed.gain_kg > limit:
            fired[days] = confirmed
            continue
        if hold:
            continue  # already holding: the unconfirmed gain cannot change the answer
        near = limit - cfg.weight_clear_margin_kg
        if confirmed is not None and confirmed.gain_kg > near:
            hold = True
            continue
        latest = weight_gain(history, at, days, cfg)
        hold = latest is not None and latest.gain_kg > near
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


def _bp_selection(history: History, at: datetime, cfg: TrendConfig) -> tuple[int, int, int, int, int, int] | None:
    """:func:`bp_protocol_readings` as indexes: (systolic from, to, diastolic from, to, window
    days, readings discarded)."""
    longest = max(cfg.bp_window_days, cfg.bp_max_window_days)
    ts, td = history.times("bp_systolic"), history.times("bp_diastolic")
    oldest = at - timedelta(days=longest)
    lo_s, hi_s = bisect_right(ts, oldest), bisect_right(ts, at)
    lo_d, hi_d = bisect_right(td, oldest), bisect_right(td, at)
    least = cfg.bp_min_readings
    if hi_s - lo_s < least or hi_d - lo_d < least:
        return None
    span = timedelta(days=cfg.bp_min_span_days)
    for days in range(cfg.bp_window_days, longest + 1):
        start = at - timedelta(days=days)
        a_s, a_d = bisect_right(ts, start, lo_s, hi_s), bisect_right(td, start, lo_d, hi_d)
        if a_s == hi_s or a_d == hi_d:
            continue
        discarded = 0
        if cfg.bp_discard_first_day:
            cut = min(ts[a_s], td[a_d]) + _DAY
            k_s, k_d = bisect_left(ts, cut, a_s, hi_s), bisect_left(td, cut, a_d, hi_d)
            discarded = k_s - a_s
            a_s, a_d = k_s, k_d
        if min(hi_s - a_s, hi_d - a_d) >= least and ts[hi_s - 1] - ts[a_s] >= span:
            return a_s, hi_s, a_d, hi_d, days, discarded
    return None


def bp_protocol_readings(
    history: History, at: datetime, cfg: TrendConfig
) -> tuple[list[Obs], list[Obs], int, int] | None:
    """The readings a home BP average is taken over, as the home monitoring protocols ask (ESH,
    AHA/AMA): every reading of the last ``bp_window_days``, those of its first day discarded, at
    least ``bp_min_readings`` left spanning ``bp_min_span_days``. A window that holds too few (a
    patient taking one reading per session instead of two) grows a day at a time up to
    ``bp_max_window_days``. Returns (systolic, diastolic, window days, readings discarded) or None."""
    selected = _bp_selection(history, at, cfg)
    if selected is None:
        return None
    a_s, b_s, a_d, b_d, days, discarded = selected
    return history.series("bp_systolic")[2][a_s:b_s], history.series("bp_diastolic")[2][a_d:b_d], days, discarded


def evaluate_bp_goal(history: History, at: datetime, config: PatientConfig) -> Outcome:
    if not config.enabled(BP_RULE):
        return Outcome()
    cfg = config.trend
    selected = _bp_selection(history, at, cfg)
    if selected is None:
        return Outcome()
    a_s, b_s, a_d, b_d, days, discarded = selected
    mean_s = fmean(history.series("bp_systolic")[1][a_s:b_s])
    mean_d = fmean(history.series("bp_diastolic")[1][a_d:b_d])
    goal, stage2, margin, over = cfg.bp_goal, cfg.bp_stage2, cfg.bp_clear_margin, cfg.bp_open_margin
    above_s, above_d = mean_s >= goal.systolic + over.systolic, mean_d >= goal.diastolic + over.diastolic
    if not (above_s or above_d):
        # Hysteresis: a mean sitting on the line neither re-opens nor clears.
        if mean_s < goal.systolic - margin.systolic and mean_d < goal.diastolic - margin.diastolic:
            return Outcome(clear=frozenset({BP_RULE}))
        return Outcome()
    systolic, diastolic = history.series("bp_systolic")[2][a_s:b_s], history.series("bp_diastolic")[2][a_d:b_d]
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

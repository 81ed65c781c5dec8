"""The rules' per-reading evaluation as it was before issue 15 item 5 (commit eb8ea72), kept only
for the differential test (``test_evaluation_differential.py``): every rule asked the History for
its windows at each evaluation, with no per-reading facts kept. Copied verbatim but for the names
it imports; the product's rules must give exactly these outcomes."""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from statistics import fmean, median
from typing import Final

from alerts.anomaly.detector import rule_key as anomaly_rule_key
from alerts.anomaly.features import ANOMALY_METRICS, FEATURE_LOOKBACK, LEVEL_READINGS, FeatureValue
from alerts.anomaly.methods import BaselineModel, RobustZModel, directional
from alerts.config import Band, PatientConfig, TrendConfig
from alerts.history import History
from alerts.model import Candidate, Kind, Obs, Outcome, Severity, merge_outcomes
from alerts.rules.news2 import CONFIRM_SPAN as NEWS2_CONFIRM_SPAN
from alerts.rules.news2 import PARAMETERS as NEWS2_PARAMETERS
from alerts.rules.news2 import RULE as NEWS2_RULE
from alerts.rules.news2 import News2Score, _candidate, _subscore
from alerts.rules.threshold import _detail, _streak, _usable, rule_key
from alerts.rules.trend import BP_RULE, PLAUSIBILITY_SPAN, WEIGHT_RULE, WeightGain
from alerts.rules.trend import CONFIRM_SPAN as WEIGHT_CONFIRM_SPAN

__all__ = ["evaluate_readings"]

_STREAK_LIMIT: Final = 200
_SAME_DAY: Final = timedelta(hours=12)
_EPSILON: Final = timedelta(microseconds=1)
_BP: Final = frozenset({"bp_systolic", "bp_diastolic"})


# -- alerts/evaluator.py ----------------------------------------------------------------------------


def evaluate_readings(
    history: History,
    at: datetime,
    metrics: Iterable[str],
    config: PatientConfig,
    model: BaselineModel | None = None,
) -> Outcome:
    arrived = frozenset(metrics)
    outcomes = [evaluate_thresholds(history, at, arrived, config)]
    if arrived & set(NEWS2_PARAMETERS):
        outcomes.append(evaluate_news2(history, at, config))
    if "body_weight" in arrived:
        outcomes.append(evaluate_weight_gain(history, at, config))
    if arrived & _BP:
        outcomes.append(evaluate_bp_goal(history, at, config))
    if model is not None and config.anomaly:
        outcomes.append(evaluate_anomaly(history, at, arrived, model, config))
    return merge_outcomes(outcomes)


# -- alerts/rules/threshold.py -----------------------------------------------------------------------


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
            side = _usable(side, config.baselines.get(key))
            if not side:  # the patient's accepted baseline lies in every band: their normal
                clear.add(key)
                continue
            result = _evaluate_direction(history, metric, at, side, latest, remeasure=config.remeasure_unconfirmed)
            if result is True:
                clear.add(key)
            elif isinstance(result, Candidate):
                candidates.append(result)
    return Outcome(tuple(candidates), frozenset(clear))


# -- alerts/rules/news2.py ---------------------------------------------------------------------------


def news2_score(
    history: History, at: datetime, window: timedelta, *, scale: int, on_oxygen: bool, confirm: int = 1
) -> News2Score:
    """The score from the latest reading of each parameter in ``(at - window, at]``.

    With ``confirm`` > 1 each parameter scores the lowest of its last ``confirm`` readings, all taken
    within ``NEWS2_CONFIRM_SPAN`` of the latest; a parameter without such confirming readings is listed as
    ``unconfirmed`` and scores nothing, so one artefact reading cannot raise the aggregate.
    """
    subscores: dict[str, int] = {"consciousness": 0, "supplemental_oxygen": 2 if on_oxygen else 0}
    used: list[Obs] = []
    missing: list[str] = []
    unconfirmed: list[str] = []
    for name in NEWS2_PARAMETERS:
        last = history.last(name, at, confirm)
        if not last or last[-1].time <= at - window:
            missing.append(name)
            continue
        recent = [o for o in last if o.time > last[-1].time - NEWS2_CONFIRM_SPAN]
        if len(recent) < confirm:
            unconfirmed.append(name)
            continue
        used.extend(recent)
        subscores[name] = min(_subscore(name, o.value, scale=scale, on_oxygen=on_oxygen) for o in recent)
    return News2Score(sum(subscores.values()), subscores, tuple(missing), tuple(used), on_oxygen, tuple(unconfirmed))


def evaluate_news2(history: History, at: datetime, config: PatientConfig) -> Outcome:
    cfg = config.news2
    if not config.enabled(NEWS2_RULE):
        return Outcome()
    window = timedelta(hours=cfg.window_h)
    scale, on_oxygen = config.spo2_scale, config.supplemental_oxygen
    latest = news2_score(history, at, window, scale=scale, on_oxygen=on_oxygen)
    if latest.measured < cfg.min_parameters:
        return Outcome()
    score = latest
    if latest.total < cfg.immediate_score and cfg.confirm > 1:
        score = news2_score(history, at, window, scale=scale, on_oxygen=on_oxygen, confirm=cfg.confirm)
    if score.band != "low":
        return Outcome((_candidate(score, latest, config),))
    if latest.band == "low":
        # Clear only when the latest readings are low too (not while a high one awaits confirmation).
        return Outcome(clear=frozenset({NEWS2_RULE}))
    if config.remeasure_unconfirmed and cfg.unconfirmed_score is not None and latest.total >= cfg.unconfirmed_score:
        # A spot check of several parameters, each read once: act now, at the unconfirmed band,
        # and ask for the repeat that confirms or refutes it.
        return Outcome((_candidate(latest, latest, config, unconfirmed_from=score),))
    return Outcome()


# -- alerts/rules/trend.py ---------------------------------------------------------------------------


def plausible_weight(history: History, o: Obs, cfg: TrendConfig) -> bool:
    """False for a weighing that jumps away from the patient's recent weights faster than any fluid
    shift could (somebody else on the scale); judged against the median of up to five weighings in
    the ``PLAUSIBILITY_SPAN`` before it."""
    before = history.window("body_weight", o.time - PLAUSIBILITY_SPAN, o.time - _EPSILON)[-5:]
    if len(before) < 2:
        return True
    elapsed_days = max((o.time - before[-1].time) / timedelta(days=1), 1.0)
    return abs(o.value - median(b.value for b in before)) <= cfg.max_plausible_kg_per_day * elapsed_days


def weight_gain(history: History, at: datetime, days: int, cfg: TrendConfig, *, confirm: int = 1) -> WeightGain | None:
    """The gain over ``days`` as of ``at``, or None.

    The current weight is the lowest of the last ``confirm`` weighings (taken within
    ``WEIGHT_CONFIRM_SPAN`` of each other, all plausible); the baseline the median of the plausible
    weighings of the ``weight_baseline_days`` before ``days`` ago (up to 12 h after it: a morning
    weighing ``days`` days earlier counts), so one low weighing does not make an ordinary one look
    like a gain.
    """
    recent = history.last("body_weight", at, confirm)
    if len(recent) < confirm or recent[-1].time - recent[0].time > WEIGHT_CONFIRM_SPAN:
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


# -- alerts/anomaly -----------------------------------------------------------------------------------


def evaluate_anomaly(
    history: History, at: datetime, arrived: Iterable[str], model: BaselineModel, config: PatientConfig
) -> Outcome:
    targets = frozenset(arrived) & model.features
    targets = frozenset(m for m in targets if config.enabled(anomaly_rule_key(m)))
    if not targets:
        return Outcome()
    # A multivariate model judges the whole vector; univariate ones only need the arrived metrics.
    wanted = None if model.method == "isolation_forest" else targets
    features = current_features(history, at, wanted)
    deviations = model.assess({name: f.value for name, f in features.items()})
    abnormal = [d for d in deviations if d.abnormal]
    candidates: list[Candidate] = []
    clear: set[str] = set()
    for d in deviations:
        if d.feature not in targets:
            continue
        if not d.abnormal:
            # Hysteresis: a level just under the line neither clears nor re-opens the alert.
            margin = config.anomaly_clear_margin_z
            if not (isinstance(model, RobustZModel) and directional(d.feature, d.z, model.threshold - margin)):
                clear.add(anomaly_rule_key(d.feature))
            continue
        candidates.append(
            Candidate(
                rule=anomaly_rule_key(d.feature),
                kind=Kind.ANOMALY,
                metric=d.feature,
                severity=Severity.MEDIUM,
                summary=f"{d.feature} level {d.value:g} vs usual {d.center:g} for this patient (z {d.z:+.1f})",
                evidence=features[d.feature].evidence,
                detail={
                    "method": model.method,
                    "trained_through": model.trained_through.isoformat(),
                    "features": [x.to_json() for x in sorted(abnormal, key=lambda x: -abs(x.z))],
                },
            )
        )
    return Outcome(tuple(candidates), frozenset(clear))


def level(history: History, metric: str, at: datetime) -> FeatureValue | None:
    """The metric's level as of ``at``; None without three readings in the last 72 hours."""
    recent = [o for o in history.last(metric, at, LEVEL_READINGS) if o.time > at - FEATURE_LOOKBACK]
    if len(recent) < LEVEL_READINGS:
        return None
    return FeatureValue(metric, float(median(o.value for o in recent)), tuple(recent))


def current_features(history: History, at: datetime, metrics: frozenset[str] | None = None) -> dict[str, FeatureValue]:
    chosen = ANOMALY_METRICS.keys() if metrics is None else metrics & ANOMALY_METRICS.keys()
    out = {}
    for m in sorted(chosen):
        f = level(history, m, at)
        if f is not None:
            out[m] = f
    return out

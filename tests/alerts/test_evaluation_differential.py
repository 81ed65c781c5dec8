"""The rules give exactly the outcomes of their former per-reading evaluation (issue 15 item 5).

``tests/alerts/reference_rules.py`` holds the evaluation as it was before the rules kept per-reading
facts in the History and decided on indexes; here both evaluate random histories under random
patient settings and rule configurations, and every outcome — candidates with their evidence and
detail, in order, and the rules found clear — must be equal:

- as the replay does it: readings added one time group at a time (some arriving late, some in
  bulk through ``extend``, the history pruned now and then), each group evaluated as it arrives, so
  the facts kept in the History are reused across evaluations and must follow its changes;
- as the engine does it: the whole history held, every group evaluated afterwards (later readings
  present, never looked at).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from itertools import groupby
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from alerts.anomaly.features import ANOMALY_METRICS, current_features
from alerts.anomaly.methods import BaselineModel, QuantileModel, RobustZModel
from alerts.config import PatientConfig, RulesConfig
from alerts.evaluator import evaluate_readings
from alerts.history import History
from alerts.model import Obs, Outcome
from alerts.rules import news2, trend
from tests.alerts import reference_rules

T0 = datetime(2026, 3, 1, 6, 0, tzinfo=UTC)

# Ranges around every band and NEWS2 boundary, in tenths so that exact boundary values occur.
RANGES: dict[str, tuple[int, int]] = {
    "spo2": (800, 1000),
    "heart_rate": (300, 1600),
    "respiratory_rate": (50, 300),
    "body_temperature": (340, 410),
    "bp_systolic": (850, 2300),
    "bp_diastolic": (500, 1300),
    "glucose": (400, 3000),
    "body_weight": (700, 790),
}
METRICS = sorted(RANGES)


@st.composite
def readings(draw: st.DrawFn) -> list[Obs]:
    # Few metrics per history, so that each has enough readings to confirm, trend and score.
    chosen = draw(st.lists(st.sampled_from(METRICS), min_size=1, max_size=5, unique=True))
    step = draw(st.sampled_from([10, 45, 180, 600]))  # minutes between slots: hours to weeks in all
    out = []
    for _ in range(draw(st.integers(1, 60))):
        metric = draw(st.sampled_from(chosen))
        lo, hi = RANGES[metric]
        slot = draw(st.integers(0, 60))
        out.append(Obs(T0 + timedelta(minutes=step * slot), metric, draw(st.integers(lo, hi)) / 10))
    return out


bands = st.fixed_dictionaries(
    {
        "op": st.sampled_from(["<", "<=", ">", ">="]),
        "value": st.integers(400, 2000).map(lambda v: v / 10),
        "severity": st.sampled_from(["low", "medium", "high", "critical"]),
        "confirm": st.integers(1, 3),
        "within_h": st.sampled_from([1.0, 6.0, 24.0, 72.0]),
    },
    optional={"of": st.integers(3, 5), "sustain_min": st.sampled_from([30.0, 120.0, 600.0]), "label": st.just("x")},
)


@st.composite
def patient(draw: st.DrawFn) -> PatientConfig:
    rules = RulesConfig(
        remeasure_unconfirmed=draw(st.booleans()),
        news2={
            "confirm": draw(st.integers(1, 3)),
            "min_parameters": draw(st.integers(1, 4)),
            "immediate_score": draw(st.sampled_from([5, 7, 9])),
            "unconfirmed_score": draw(st.sampled_from([None, 3, 5])),
        },
        trend={
            "weight_confirm": draw(st.integers(1, 3)),
            "weight_clear_margin_kg": draw(st.sampled_from([0.0, 0.3, 1.0])),
            "max_plausible_kg_per_day": draw(st.sampled_from([1.0, 4.0])),
            "weight_baseline_days": draw(st.sampled_from([1.0, 3.0])),
            "bp_window_days": draw(st.integers(1, 7)),
            "bp_max_window_days": draw(st.integers(1, 14)),
            "bp_min_readings": draw(st.integers(1, 8)),
            "bp_min_span_days": draw(st.sampled_from([0.0, 0.5, 3.0])),
            "bp_discard_first_day": draw(st.booleans()),
        },
    )
    doc: dict[str, Any] = {
        "spo2_scale": draw(st.sampled_from([1, 2])),
        "supplemental_oxygen": draw(st.booleans()),
        "disabled_rules": draw(
            st.lists(st.sampled_from(["news2", "trend", "threshold:spo2", "threshold:heart_rate:high", "anomaly"]))
        ),
    }
    if draw(st.booleans()):
        doc["news2_window_h"] = draw(st.sampled_from([1.0, 12.0, 72.0]))
    if draw(st.booleans()):
        doc["weight_gain_kg"] = {1: draw(st.sampled_from([0.5, 1.4])), 3: 2.0, 5: draw(st.sampled_from([1.0, 3.0]))}
    if draw(st.booleans()):
        doc["bp_goal"] = {"systolic": draw(st.sampled_from([110.0, 130.0])), "diastolic": 80.0}
    if draw(st.booleans()):
        doc["thresholds"] = {draw(st.sampled_from(METRICS)): draw(st.lists(bands, max_size=4))}
    baselines = draw(
        st.dictionaries(
            st.sampled_from(["threshold:spo2:low", "threshold:heart_rate:high", "threshold:glucose:high"]),
            st.integers(500, 2000).map(lambda v: v / 10),
            max_size=2,
        )
    )
    return PatientConfig.resolve(rules, doc, baselines)


@st.composite
def model(draw: st.DrawFn) -> BaselineModel | None:
    kind = draw(st.sampled_from(["none", "robust_z", "quantile"]))
    if kind == "none":
        return None
    names = draw(st.lists(st.sampled_from(sorted(ANOMALY_METRICS)), min_size=1, unique=True))
    centers = {m: (RANGES[m][0] + RANGES[m][1]) / 20 for m in names}
    scales = {m: draw(st.sampled_from([0.5, 2.0, 10.0])) for m in names}
    trained = T0 + timedelta(hours=draw(st.integers(-24, 24 * 10)))
    if kind == "robust_z":
        return RobustZModel(centers, scales, draw(st.sampled_from([1.0, 4.0])), trained, 100)
    width = {m: draw(st.sampled_from([1.0, 20.0])) for m in names}
    lows = {m: centers[m] - width[m] for m in names}
    highs = {m: centers[m] + width[m] for m in names}
    return QuantileModel(lows, highs, centers, scales, trained, 100)


def _both(history: History, at: datetime, arrived: frozenset[str], config: PatientConfig, m: Any) -> Outcome:
    usable = m if m is not None and m.trained_through <= at else None
    new = evaluate_readings(history, at, arrived, config, usable)
    old = reference_rules.evaluate_readings(history, at, arrived, config, usable)
    assert new == old, (at, arrived)
    return new


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(
    obs=readings(),
    config=patient(),
    m=model(),
    late=st.lists(st.integers(0, 59), max_size=4),
    bulk=st.lists(st.integers(0, 59), max_size=3),
    prune_every=st.sampled_from([0, 5, 17]),
)
def test_replay_order_outcomes_equal_the_per_reading_evaluation(
    obs: list[Obs], config: PatientConfig, m: Any, late: list[int], bulk: list[int], prune_every: int
) -> None:
    ordered = sorted(obs, key=lambda o: o.time)
    groups = [(at, list(g)) for at, g in groupby(ordered, key=lambda o: o.time)]
    # Some groups are held back and arrive later, after newer readings (a late upload).
    held = {i % len(groups) for i in late}
    history, delayed = History(), []
    for n, (at, group) in enumerate(groups):
        if n in held:
            delayed.append((at, group))
            continue
        if n in bulk:
            history.extend(group)
        else:
            for o in group:
                history.add(o)
        if delayed and n % 3 == 2:
            then, old = delayed.pop(0)
            history.extend(old)
            _both(history, then, frozenset(o.metric for o in old), config, m)
        _both(history, at, frozenset(o.metric for o in group), config, m)
        if prune_every and n % prune_every == prune_every - 1:
            history.prune(at - timedelta(days=3))
    for then, old in delayed:
        for o in old:
            history.add(o)
        _both(history, then, frozenset(o.metric for o in old), config, m)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(obs=readings(), config=patient(), m=model(), offsets=st.lists(st.integers(-600, 600), max_size=5))
def test_engine_order_outcomes_equal_the_per_reading_evaluation(
    obs: list[Obs], config: PatientConfig, m: Any, offsets: list[int]
) -> None:
    history = History()
    history.extend(obs)
    times = sorted({o.time for o in obs})
    for at in times:
        _both(history, at, frozenset(o.metric for o in obs if o.time == at), config, m)
    # Between readings too, every metric at once (the levels a multivariate model asks for).
    everything = frozenset(METRICS)
    for k, minutes in enumerate(offsets):
        at = times[k % len(times)] + timedelta(minutes=minutes)
        _both(history, at, everything, config, m)
        assert current_features(history, at) == reference_rules.current_features(history, at)


def test_a_weighing_is_judged_again_after_an_earlier_one_arrives_late() -> None:
    """The plausibility kept for a weighing follows late arrivals before it (80 kg after 70 and 70 is
    implausible; two late weighings near 80 just before it change its neighbours): the outcomes stay
    exactly those of the per-reading evaluation."""
    config = PatientConfig.resolve(RulesConfig())
    history = History()
    for day, kg in ((0, 70.0), (1, 70.0), (2, 80.0), (3, 80.5), (4, 81.0)):
        history.add(Obs(T0 + timedelta(days=day), "body_weight", kg))
        _both(history, T0 + timedelta(days=day), frozenset({"body_weight"}), config, None)
    for when, kg in ((1.5, 80.0), (1.7, 80.2)):
        history.add(Obs(T0 + timedelta(days=when), "body_weight", kg))
    for day in (2, 3, 4):
        _both(history, T0 + timedelta(days=day), frozenset({"body_weight"}), config, None)


weighings = st.lists(
    st.builds(
        Obs,
        time=st.integers(0, 40).map(lambda h: T0 + timedelta(hours=12 * h)),
        metric=st.just("body_weight"),
        value=st.integers(700, 800).map(lambda v: v / 10),
    ),
    max_size=30,
)


@settings(max_examples=300, deadline=None)
@given(
    first=weighings,
    steps=st.lists(st.tuples(st.sampled_from(["add", "extend", "prune"]), weighings, st.integers(0, 40)), max_size=6),
)
def test_kept_facts_equal_facts_derived_afresh(first: list[Obs], steps: list[tuple[str, list[Obs], int]]) -> None:
    """After every change of the History (appends, late arrivals, merges, pruning) the facts it
    keeps equal those derived from its readings as they are now: the plausibility of every weighing
    (which looks at the weighings of the four days before it) and every NEWS2 sub-score."""
    cfg = RulesConfig().trend
    history = History()
    history.extend(first)
    for kind, obs, hours in steps:
        _check_facts(history, cfg)
        if kind == "add":
            for o in obs:
                history.add(o)
        elif kind == "extend":
            history.extend(obs)
        else:
            history.prune(T0 + timedelta(hours=12 * hours))
    _check_facts(history, cfg)


def _check_facts(history: History, cfg: Any) -> None:
    weights = history.all("body_weight")
    assert trend._plausible(history, cfg) == [reference_rules.plausible_weight(history, o, cfg) for o in weights]
    # A value-only fact (the NEWS2 sub-score function, asked of the weighings).
    assert news2._subscores(history, "body_weight", scale=1, on_oxygen=False) == [
        news2._subscore("body_weight", o.value, scale=1, on_oxygen=False) for o in weights
    ]

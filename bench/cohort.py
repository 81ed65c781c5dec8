"""Synthetic remote-monitoring cohort with labelled clinical events, for tuning and measuring alerts.

Each patient has their own baseline (heart rate, SpO2, blood pressure, temperature, weight,
glucose, respiration), day-to-day variation, measuring noise and habits (a morning and an evening
session, skipped sessions and days), and the artefacts home devices produce: SpO2 dips from a cold
finger or movement, heart-rate spikes, a cuff reading taken while talking, heavy clothes or
somebody else on the scale, a thermometer not placed well, a sugary finger on a glucose strip.

Event patients get one labelled event after at least 30 days of history:

==================  ====================================================================
hypoxaemia          SpO2 falls to 88-91 % over 1-2 days (with pulse and temperature up)
hf_fluid_gain       heart failure: +2.6-4 kg over 4-6 days
hypertensive_crisis systolic 192-212 and diastolic 112-126 for 1.5-3 days
hypoglycaemia       fasting glucose 45-65 mg/dL on two mornings
hyperglycaemia      glucose 270-330 mg/dL for 3 days
infection           fever 38.4-39.2 Cel, pulse +25-40, SpO2 -2-4 (NEWS2 territory)
bradycardia         pulse 33-38 /min for 3 days
tachyarrhythmia     pulse 128-150 /min for 2-3 days
slow_hr_rise        pulse +18-24 over 12 days (still "normal" for the population)
slow_spo2_decline   SpO2 -2.5-3 points over 12 days (still >= 95 % on average)
slow_weight_gain    +2.0-2.6 kg over 14 days (never 2.3 kg in a week)
slow_bp_rise        +22-30/+10-14 mmHg over 14 days
glucose_drift       fasting glucose +45-60 mg/dL over 14 days
low_grade_temp      temperature +1.0-1.3 Cel over 7 days (below 38.1)
nonadherence        no readings at all for 5-7 days
==================  ====================================================================

The slow_* events, glucose_drift and low_grade_temp are "normal for the population but not for this
patient": population thresholds are not meant to see them. ``python -m bench.cohort --out DIR`` writes
``readings.csv`` (the replay format), ``patients.json`` (patient settings) and ``events.json``.
"""

from __future__ import annotations

import argparse
import csv
import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

T0 = datetime(2026, 1, 5, tzinfo=UTC)
DAY = timedelta(days=1)

EVENT_KINDS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    # kind: (metrics whose alerts count as detecting it, alert kinds without a metric that count)
    "hypoxaemia": (("spo2", "heart_rate", "body_temperature"), ("news2",)),
    "hf_fluid_gain": (("body_weight",), ()),
    "hypertensive_crisis": (("bp_systolic", "bp_diastolic"), ()),
    "hypoglycaemia": (("glucose",), ()),
    "hyperglycaemia": (("glucose",), ()),
    "infection": (("body_temperature", "heart_rate", "spo2", "respiratory_rate"), ("news2",)),
    "bradycardia": (("heart_rate",), ("news2",)),
    "tachyarrhythmia": (("heart_rate",), ("news2",)),
    "slow_hr_rise": (("heart_rate",), ()),
    "slow_spo2_decline": (("spo2",), ()),
    "slow_weight_gain": (("body_weight",), ()),
    "slow_bp_rise": (("bp_systolic", "bp_diastolic"), ()),
    "glucose_drift": (("glucose",), ()),
    "low_grade_temp": (("body_temperature",), ()),
    "nonadherence": ((), ("missing_data",)),
}


@dataclass
class Event:
    patient_id: str
    kind: str
    start: datetime
    end: datetime
    metrics: tuple[str, ...]
    kinds: tuple[str, ...]

    def to_json(self) -> dict[str, object]:
        d = asdict(self)
        d["start"], d["end"] = self.start.isoformat(), self.end.isoformat()
        return d


@dataclass
class Patient:
    patient_id: str
    quiet: bool
    conditions: set[str]
    devices: set[str]
    base: dict[str, float]
    settings: dict[str, object] = field(default_factory=dict)
    p_skip: float = 0.06
    p_evening: float = 0.7


@dataclass
class Cohort:
    seed: int
    start: datetime
    days: int
    patients: list[Patient]
    readings: list[tuple[str, datetime, str, float]]
    events: list[Event]

    @property
    def quiet_patients(self) -> list[str]:
        return [p.patient_id for p in self.patients if p.quiet]

    def settings(self) -> dict[str, dict[str, object]]:
        return {p.patient_id: p.settings for p in self.patients if p.settings}


# An effect: (metric, time) -> additive change of the patient's true level.
Effect = Callable[[str, datetime], float]


def _ramp(t: datetime, start: datetime, ramp_days: float, hold_days: float, recover_days: float = 1.0) -> float:
    """0 before start, rising linearly to 1 over ramp_days, held, then back to 0 over recover_days."""
    x = (t - start) / DAY
    if x < 0:
        return 0.0
    if x < ramp_days:
        return x / ramp_days
    x -= ramp_days
    if x < hold_days:
        return 1.0
    x -= hold_days
    return max(0.0, 1.0 - x / recover_days)


def _truncated(rng: np.random.Generator, mean: float, sd: float, lo: float, hi: float) -> float:
    """A normal draw inside [lo, hi] (rejection sampling: no pile-up at the bounds)."""
    while True:
        x = float(rng.normal(mean, sd))
        if lo <= x <= hi:
            return x


def _new_patient(rng: np.random.Generator, pid: str, quiet: bool) -> Patient:
    conditions = {"htn"}
    for cond, p in (("hf", 0.3), ("diabetes", 0.35), ("copd", 0.12)):
        if rng.random() < p:
            conditions.add(cond)
    devices = {"cuff", "oximeter"}
    if "hf" in conditions or rng.random() < 0.2:
        devices.add("scale")
    if "diabetes" in conditions:
        devices.add("glucometer")
    if rng.random() < 0.45:
        devices.add("thermometer")
    if ("copd" in conditions and rng.random() < 0.6) or rng.random() < 0.1:
        devices.add("rr")
    copd = "copd" in conditions and rng.random() < 0.5
    base = {
        "heart_rate": _truncated(rng, 70, 8, 54, 86),
        "spo2": float(rng.uniform(89.5, 92.0) if copd else rng.uniform(95.8, 98.6)),
        # Controlled hypertension: home means below the 130/80 goal.
        "bp_systolic": _truncated(rng, 117, 6, 102, 125),
        "bp_diastolic": _truncated(rng, 71, 4, 60, 77),
        "body_temperature": float(rng.uniform(36.3, 36.8)),
        "body_weight": float(rng.uniform(58, 112)),
        "glucose": float(rng.uniform(100, 135)),
        "respiratory_rate": float(rng.uniform(13, 18)),
    }
    return Patient(
        patient_id=pid,
        quiet=quiet,
        conditions=conditions,
        devices=devices,
        base=base,
        settings={"spo2_scale": 2} if copd else {},
        p_skip=float(rng.uniform(0.02, 0.1)),
        p_evening=float(rng.uniform(0.4, 0.95)),
    )


# kind -> (patient, start, uniform draw) -> (effect, duration in days, measuring behaviour)
_Draw = Callable[[float, float], float]
_Plan = tuple[Effect, float, dict[str, int]]


def _hypoxaemia(p: Patient, start: datetime, u: _Draw) -> _Plan:
    drop, hr, dur = p.base["spo2"] - u(88.5, 91.5), u(8, 14), u(4, 6)
    return _fx(start, 1.5, dur - 1.5, {"spo2": -drop, "heart_rate": hr, "body_temperature": 0.6}), dur, {"extra": 2}


def _crisis(p: Patient, start: datetime, u: _Draw) -> _Plan:
    dur = u(1.5, 3)
    fx = {"bp_systolic": u(192, 212) - p.base["bp_systolic"], "bp_diastolic": u(112, 126) - p.base["bp_diastolic"]}
    return _fx(start, 0.2, dur, fx), dur, {"extra": 1}


def _infection(p: Patient, start: datetime, u: _Draw) -> _Plan:
    fx = {"body_temperature": 38.8 - p.base["body_temperature"] + u(-0.3, 0.4), "heart_rate": u(25, 40)}
    fx |= {"spo2": -u(2, 4), "respiratory_rate": u(5, 8)}
    return _fx(start, 1.0, 3.0, fx), 4.0, {"extra": 1}


def _tachy(p: Patient, start: datetime, u: _Draw) -> _Plan:
    dur = u(2, 3)
    return _fx(start, 0.1, dur, {"heart_rate": u(128, 150) - p.base["heart_rate"]}), dur, {}


def _slow(metric_deltas: dict[str, tuple[float, float]], ramp: float, hold: float) -> Callable[..., _Plan]:
    def plan(p: Patient, start: datetime, u: _Draw) -> _Plan:
        return _fx(start, ramp, hold, {m: u(lo, hi) for m, (lo, hi) in metric_deltas.items()}), ramp + hold, {}

    return plan


_EVENTS: dict[str, Callable[[Patient, datetime, _Draw], _Plan]] = {
    "hypoxaemia": _hypoxaemia,
    "hf_fluid_gain": lambda p, start, u: (
        _fx(start, (r := u(4, 6)), 3, {"body_weight": u(2.6, 4.0), "spo2": -1.0}, recover=3),
        r + 3,
        {},
    ),
    "hypertensive_crisis": _crisis,
    "hypoglycaemia": lambda p, start, u: (
        _fx(start, 0.01, 1.5, {"glucose": u(45, 62) - p.base["glucose"]}, recover=0.01),
        1.5,
        {"fasting_only": 1},
    ),
    "hyperglycaemia": lambda p, start, u: (_fx(start, 0.5, 2.5, {"glucose": u(270, 330) - p.base["glucose"]}), 3.0, {}),
    "infection": _infection,
    "bradycardia": lambda p, start, u: (
        _fx(start, 0.5, 2.5, {"heart_rate": u(33, 38) - p.base["heart_rate"]}),
        3.0,
        {},
    ),
    "tachyarrhythmia": _tachy,
    "slow_hr_rise": _slow({"heart_rate": (18, 24)}, 12, 6),
    "slow_spo2_decline": _slow({"spo2": (-3.0, -2.5)}, 12, 6),
    "slow_weight_gain": _slow({"body_weight": (2.0, 2.6)}, 14, 7),
    "slow_bp_rise": _slow({"bp_systolic": (22, 30), "bp_diastolic": (10, 14)}, 14, 7),
    "glucose_drift": _slow({"glucose": (45, 60)}, 14, 7),
    "low_grade_temp": _slow({"body_temperature": (1.0, 1.3)}, 7, 7),
    "nonadherence": lambda p, start, u: ((lambda metric, t: 0.0), u(5, 7), {"silent": 1}),
}


def _event_effect(rng: np.random.Generator, p: Patient, kind: str, start: datetime) -> _Plan:
    """The effect of an event, its duration in days, and measuring-behaviour changes."""

    def u(lo: float, hi: float) -> float:
        return float(rng.uniform(lo, hi))

    return _EVENTS[kind](p, start, u)


def _fx(start: datetime, ramp: float, hold: float, deltas: dict[str, float], recover: float = 1.0) -> Effect:
    def effect(metric: str, t: datetime) -> float:
        d = deltas.get(metric)
        return 0.0 if d is None else d * _ramp(t, start, ramp, hold, recover)

    return effect


_NEEDS = {
    "hf_fluid_gain": ("scale", "hf"),
    "slow_weight_gain": ("scale", None),
    "hypoglycaemia": ("glucometer", "diabetes"),
    "hyperglycaemia": ("glucometer", "diabetes"),
    "glucose_drift": ("glucometer", "diabetes"),
    "low_grade_temp": ("thermometer", None),
    "infection": ("thermometer", None),
}


def _make_fit(p: Patient, kind: str) -> None:
    """Give an event patient the devices and condition the event needs."""
    device, condition = _NEEDS.get(kind, (None, None))
    if device:
        p.devices.add(device)
    if condition:
        p.conditions.add(condition)
    if kind in ("hypoxaemia", "slow_spo2_decline") and p.settings.get("spo2_scale") == 2:
        p.settings = {}
        p.base["spo2"] = 97.0


_DAY_SD = {
    "heart_rate": 2.5,
    "spo2": 0.4,
    "bp_systolic": 4.0,
    "bp_diastolic": 2.5,
    "body_temperature": 0.1,
    "glucose": 7.0,
    "respiratory_rate": 0.8,
}
_ROUND = {"body_temperature": 1, "body_weight": 1}


class _Sim:
    """One patient's measurements over the cohort period."""

    def __init__(
        self,
        rng: np.random.Generator,
        p: Patient,
        effect: Effect,
        window: tuple[datetime, datetime] | None,
        behaviour: dict[str, int],
    ) -> None:
        self.rng, self.p, self.effect, self.window, self.behaviour = rng, p, effect, window, behaviour
        self.out: list[tuple[str, datetime, str, float]] = []
        self.weight = p.base["body_weight"]
        self.day_fx: dict[str, float] = {}

    def in_event(self, t: datetime) -> bool:
        return self.window is not None and self.window[0] <= t < self.window[1]

    def level(self, metric: str, t: datetime, *, effect: bool = True) -> float:
        base = self.weight if metric == "body_weight" else self.p.base[metric] + self.day_fx.get(metric, 0.0)
        return base + (self.effect(metric, t) if effect else 0.0)

    def emit(self, t: datetime, metric: str, value: float) -> None:
        if self.behaviour.get("silent") and self.in_event(t):
            return
        lo, hi = {"spo2": (50, 100), "heart_rate": (25, 220), "body_temperature": (33, 42)}.get(metric, (1, 1000))
        value = min(max(value, lo), hi)
        self.out.append((self.p.patient_id, t, metric, round(value, _ROUND.get(metric, 0))))

    def day(self, day0: datetime) -> None:
        rng = self.rng
        self.day_fx = {m: float(rng.normal(0, sd)) for m, sd in _DAY_SD.items()}
        self.weight += float(rng.normal(0, 0.12)) - 0.1 * (self.weight - self.p.base["body_weight"])
        if rng.random() < 0.04:
            return  # the whole day forgotten
        sessions = [("morning", day0 + timedelta(hours=float(rng.normal(7.5, 0.6))))]
        if rng.random() < self.p.p_evening:
            sessions.append(("evening", day0 + timedelta(hours=float(rng.normal(20.0, 1.0)))))
        if self.in_event(day0 + timedelta(hours=12)):
            for i in range(self.behaviour.get("extra", 0)):
                sessions.append(("extra", day0 + timedelta(hours=12 + 2.5 * i + float(rng.normal(0, 0.5)))))
        for name, t in sessions:
            if rng.random() >= self.p.p_skip:
                self.session(name, t)

    def session(self, name: str, t: datetime) -> None:
        rng, dev = self.rng, self.p.devices
        u, n = rng.uniform, rng.normal
        if "scale" in dev and name == "morning":
            w = self.level("body_weight", t) + n(0, 0.2)
            if rng.random() < 0.02:
                w += u(0.8, 2.0)
            elif rng.random() < 0.003:
                w += float(rng.choice([-1, 1])) * u(15, 30)
            self.emit(t - timedelta(minutes=20), "body_weight", w)
        if "cuff" in dev:
            s, d = self.level("bp_systolic", t) + n(0, 7), self.level("bp_diastolic", t) + n(0, 5)
            if rng.random() < 0.02:
                s, d = s + u(15, 35), d + u(5, 15)
            self.emit(t, "bp_systolic", s)
            self.emit(t, "bp_diastolic", d)
            self.emit(t, "heart_rate", self._hr(t))
        if "oximeter" in dev:
            t2 = t + timedelta(minutes=float(u(2, 6)))
            spo2 = self.level("spo2", t2) + n(0, 0.7)
            if rng.random() < 0.025:
                spo2 -= u(3, 9)
            self.emit(t2, "spo2", spo2)
            self.emit(t2, "heart_rate", self._hr(t2))
            if "rr" in dev:
                self.emit(t2, "respiratory_rate", self.level("respiratory_rate", t2) + n(0, 1.5))
        if "thermometer" in dev and name != "evening":
            temp = self.level("body_temperature", t) + n(0, 0.12)
            if rng.random() < 0.02:
                temp -= u(0.8, 1.6)
            self.emit(t + timedelta(minutes=8), "body_temperature", temp)
        if "glucometer" in dev:
            self._glucose(name, t)

    def _hr(self, t: datetime) -> float:
        hr = self.level("heart_rate", t) + self.rng.normal(0, 3.5)
        return hr + self.rng.uniform(25, 45) if self.rng.random() < 0.01 else hr

    def _glucose(self, name: str, t: datetime) -> None:
        rng = self.rng
        fasting_only = bool(self.behaviour.get("fasting_only"))
        times = [(t - timedelta(minutes=30), 0.0, True)]
        if name == "evening":
            times = [(t - timedelta(hours=2), 15.0, False)]
            if rng.random() < 0.3:
                times.append((t + timedelta(hours=1), float(rng.normal(40, 15)), False))
        for when, meal, fasting in times:
            level = self.level("glucose", when, effect=fasting or not fasting_only)
            g = (level + meal) * float(np.exp(rng.normal(0, 0.07)))
            if rng.random() < 0.01:
                g += rng.uniform(60, 120)
            self.emit(when, "glucose", g)


def generate(seed: int, *, quiet: int = 40, per_kind: int = 2, days: int = 90, start: datetime = T0) -> Cohort:
    rng = np.random.default_rng(seed)
    patients: list[Patient] = []
    plans: list[tuple[Patient, Effect, tuple[datetime, datetime] | None, dict[str, int]]] = []
    events: list[Event] = []
    n = 0
    for kind, (metrics, kinds) in EVENT_KINDS.items():
        for _ in range(per_kind):
            n += 1
            p = _new_patient(rng, f"ev{seed}-{n:03d}", quiet=False)
            _make_fit(p, kind)
            slow = kind.startswith("slow") or kind in ("glucose_drift", "low_grade_temp")
            first = start + timedelta(days=float(rng.uniform(35, days - (25 if slow else 10))))
            effect, duration, behaviour = _event_effect(rng, p, kind, first)
            end = first + timedelta(days=duration)
            events.append(Event(p.patient_id, kind, first, end, metrics, kinds))
            patients.append(p)
            plans.append((p, effect, (first, end), behaviour))
    for i in range(quiet):
        p = _new_patient(rng, f"q{seed}-{i + 1:03d}", quiet=True)
        patients.append(p)
        plans.append((p, lambda metric, t: 0.0, None, {}))
    readings: list[tuple[str, datetime, str, float]] = []
    for i, (p, effect, window, behaviour) in enumerate(plans):
        sim = _Sim(np.random.default_rng([seed, i]), p, effect, window, behaviour)
        for d in range(days):
            sim.day(start + d * DAY)
        readings.extend(sim.out)
    readings.sort(key=lambda r: (r[1], r[0], r[2]))
    return Cohort(seed, start, days, patients, readings, events)


def write(cohort: Cohort, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    with (out / "readings.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["patient_id", "time", "metric", "value"])
        for pid, t, metric, value in cohort.readings:
            w.writerow([pid, t.isoformat().replace("+00:00", "Z"), metric, value])
    (out / "patients.json").write_text(json.dumps(cohort.settings(), indent=1))
    (out / "events.json").write_text(json.dumps([e.to_json() for e in cohort.events], indent=1))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--quiet", type=int, default=40)
    ap.add_argument("--per-kind", type=int, default=2)
    ap.add_argument("--days", type=int, default=90)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    cohort = generate(args.seed, quiet=args.quiet, per_kind=args.per_kind, days=args.days)
    write(cohort, args.out)
    print(
        json.dumps({"patients": len(cohort.patients), "readings": len(cohort.readings), "events": len(cohort.events)})
    )


if __name__ == "__main__":
    main()

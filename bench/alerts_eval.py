"""Alert quality and engine throughput on the synthetic cohort (bench/cohort.py). Prints JSON.

For each configuration (``thresholds_only``: every rule without anomaly models; ``with_anomaly``:
the same plus the deployed anomaly method) the cohort is replayed through ``alerts.replay`` (the
engine's rules and lifecycle, in memory) and scored:

- ``recall``: labelled events with at least one matching alert reaching the care team between the
  event's start and two days after its end (matching: the alert's metric is one of the event's
  metrics, or its kind is one the event names, e.g. ``news2`` for an infection);
- ``false_alerts_per_patient_month``: alerts reaching the care team on *quiet* patients (no
  labelled event) per quiet patient-month (30 days); ``false_alerts_per_patient_month_all`` also
  counts alerts on event patients outside their event windows, over all patient-months;
- an alert *reaches the care team* when it opens confirmed, or when a repeat measurement confirms an
  alert that opened unconfirmed (issue 14: an unconfirmed alert's default walk only asks the patient
  to re-measure; before issue 14 every alert opened confirmed, so the figures compare like with
  like). ``remeasure_requests_per_patient_month`` counts the unconfirmed alerts opened on quiet
  patients (each asked the patient to repeat a measurement), ``unconfirmed`` how they ended;
- ``median_hours_to_detection``: from the event's start to the first matching alert reaching the
  care team; ``median_hours_to_first_action`` to the first matching alert of any kind (an
  unconfirmed one asks the patient at once); ``hours_to_detection`` per event;
- ``readings_per_s``: the alert engine (``vigil alerts run`` code, in this process) consuming the
  cohort from PostgreSQL by watermark: readings evaluated per second of wall time;
- ``replay_readings_per_s``: the same evaluation through the in-memory replay.

``--seeds`` takes the tuning seed first and hold-out seeds after it; every seed is reported.
``--compare-anomaly`` adds the anomaly method comparison (docs/alerts.md records it).
Run: ``.venv/bin/python -m bench.alerts_eval``
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from alerts.config import AnomalyConfig, RulesConfig
from alerts.replay import OpenedAlert, Replayer
from alerts.replay_csv import ReplayReading
from bench.cohort import Cohort, generate

GRACE = timedelta(days=2)


@dataclass
class Replayed:
    opened: list[OpenedAlert]
    # Alerts that opened unconfirmed: when a repeat confirmed them; which a normal repeat refuted.
    confirmed_at: dict[int, datetime] = field(default_factory=dict)
    refuted: set[int] = field(default_factory=set)

    def reached_care_team(self, a: OpenedAlert) -> datetime | None:
        """When the alert reached the care team: at opening, or when a repeat confirmed it."""
        if not a.to_json().get("unconfirmed", False):
            return a.opened_at
        return self.confirmed_at.get(a.alert_id)


def replay(cohort: Cohort, rules: RulesConfig, *, anomaly: bool, method: str | None = None) -> tuple[Replayed, float]:
    readings = [ReplayReading(t, pid, m, v) for pid, t, m, v in cohort.readings]
    readings.sort(key=lambda r: (r.time, r.patient_id))
    replayer = Replayer(rules, patient_settings=cohort.settings(), anomaly=anomaly, anomaly_method=method)
    start = time.perf_counter()
    opened = list(replayer.run(readings))
    rate = len(readings) / (time.perf_counter() - start)
    return Replayed(opened, dict(getattr(replayer, "confirmed_at", {})), set(getattr(replayer, "refuted", ()))), rate


def score(cohort: Cohort, replayed: Replayed) -> dict[str, Any]:
    by_patient: dict[str, list[Any]] = {}
    for e in cohort.events:
        by_patient.setdefault(e.patient_id, []).append(e)
    quiet = set(cohort.quiet_patients)
    detected: dict[int, float] = {}
    first_action: dict[int, float] = {}
    false_quiet: Counter[str] = Counter()
    false_all = 0
    remeasure_quiet = 0
    unconfirmed: Counter[str] = Counter()
    for a in replayed.opened:
        j = a.to_json()
        if j.get("unconfirmed", False):
            unconfirmed[
                "confirmed"
                if a.alert_id in replayed.confirmed_at
                else "refuted"
                if a.alert_id in replayed.refuted
                else "open_at_end"
            ] += 1
            remeasure_quiet += a.patient_id in quiet
        matching = [e for e in by_patient.get(a.patient_id, []) if j["metric"] in e.metrics or j["kind"] in e.kinds]
        for e in matching:
            if e.start <= a.opened_at <= e.end + GRACE:
                hours = (a.opened_at - e.start) / timedelta(hours=1)
                first_action[id(e)] = min(first_action.get(id(e), hours), hours)
        at = replayed.reached_care_team(a)
        if at is None:
            continue  # asked the patient to re-measure; never reached the care team
        inside = False
        for e in by_patient.get(a.patient_id, []):
            if e.start <= at <= e.end + GRACE:
                inside = True
                if e in matching:
                    hours = (at - e.start) / timedelta(hours=1)
                    detected[id(e)] = min(detected.get(id(e), hours), hours)
        if not inside:
            false_all += 1
            if a.patient_id in quiet:
                false_quiet[j["rule"]] += 1
    months = cohort.days / 30
    missed = [f"{e.kind}:{e.patient_id}" for e in cohort.events if id(e) not in detected]
    return {
        "recall": round(len(detected) / len(cohort.events), 3),
        "events": len(cohort.events),
        "missed": missed,
        "false_alerts_per_patient_month": round(sum(false_quiet.values()) / (len(quiet) * months), 3),
        "false_alerts_per_patient_month_all": round(false_all / (len(cohort.patients) * months), 3),
        "false_alerts_quiet_by_rule": dict(false_quiet.most_common()),
        "alerts_opened": len(replayed.opened),
        "remeasure_requests_per_patient_month": round(remeasure_quiet / (len(quiet) * months), 3),
        "unconfirmed": dict(unconfirmed),
        "median_hours_to_detection": round(statistics.median(detected.values()), 1) if detected else None,
        "median_hours_to_first_action": round(statistics.median(first_action.values()), 1) if first_action else None,
        "hours_to_detection": {
            f"{e.kind}:{e.patient_id}": round(detected[id(e)], 1) for e in cohort.events if id(e) in detected
        },
    }


def evaluate(seed: int, args: argparse.Namespace, engine: Any) -> dict[str, Any]:
    cohort = generate(seed, quiet=args.quiet, per_kind=args.per_kind, days=args.days)
    out: dict[str, Any] = {"seed": seed, "patients": len(cohort.patients), "readings": len(cohort.readings)}
    base = RulesConfig()
    for name, anomaly in (("thresholds_only", False), ("with_anomaly", True)):
        replayed, rate = replay(cohort, base, anomaly=anomaly)
        result = score(cohort, replayed)
        result["replay_readings_per_s"] = round(rate)
        if engine is not None:
            result.update(engine(cohort, anomaly=anomaly))
        out[name] = result
        print(
            f"seed {seed} {name}: recall {result['recall']} false {result['false_alerts_per_patient_month']}",
            file=sys.stderr,
        )
    if args.compare_anomaly:
        out["anomaly_methods"] = compare(cohort, base)
    return out


def compare(cohort: Cohort, base: RulesConfig) -> dict[str, Any]:
    """Each anomaly method with all the other rules; "anomaly_alone" scores only its anomaly alerts
    (alerts of different rules never interact, so this equals a run with the anomaly rule alone)."""
    variants: list[tuple[str, str, AnomalyConfig]] = [
        ("robust_z", "robust_z", base.anomaly),
        ("robust_z_guard0", "robust_z", base.anomaly.model_copy(update={"guard_days": 0})),
        ("robust_z_z3", "robust_z", base.anomaly.model_copy(update={"z": 3.0})),
        ("robust_z_z5", "robust_z", base.anomaly.model_copy(update={"z": 5.0})),
        ("quantile", "quantile", base.anomaly),
        ("quantile_margin0.5", "quantile", base.anomaly.model_copy(update={"quantile_margin": 0.5})),
        ("isolation_forest", "isolation_forest", base.anomaly),
    ]
    results = {}
    for name, method, cfg in variants:
        replayed, rate = replay(cohort, base.model_copy(update={"anomaly": cfg}), anomaly=True, method=method)
        full = score(cohort, replayed)
        only = [a for a in replayed.opened if a.candidate.kind.value == "anomaly"]
        alone = score(cohort, Replayed(only, replayed.confirmed_at, replayed.refuted))
        results[name] = {
            "anomaly_alone": {k: alone[k] for k in ("recall", "false_alerts_per_patient_month", "missed")},
            "with_rules": {k: full[k] for k in ("recall", "false_alerts_per_patient_month", "missed")},
            "replay_readings_per_s": round(rate),
        }
        print(
            f"  {name}: alone {alone['recall']}/{alone['false_alerts_per_patient_month']} "
            f"with rules {full['recall']}/{full['false_alerts_per_patient_month']}",
            file=sys.stderr,
        )
    return results


def main() -> None:
    ap = argparse.ArgumentParser(description="alert recall, false alerts and engine throughput")
    ap.add_argument("--seeds", type=int, nargs="+", default=[1, 2], help="tuning seed first, then hold-out seeds")
    ap.add_argument("--quiet", type=int, default=40)
    ap.add_argument("--per-kind", type=int, default=2)
    ap.add_argument("--days", type=int, default=90)
    ap.add_argument("--compare-anomaly", action="store_true")
    ap.add_argument("--no-engine", action="store_true", help="skip the PostgreSQL engine throughput run")
    args = ap.parse_args()
    engine = None
    if not args.no_engine:
        from bench.alerts_engine import engine_throughput

        engine = engine_throughput
    per_seed = [evaluate(seed, args, engine) for seed in args.seeds]
    tuning = per_seed[0]
    report = {
        name: {
            k: tuning[name][k]
            for k in ("recall", "false_alerts_per_patient_month", "readings_per_s")
            if k in tuning[name]
        }
        for name in ("thresholds_only", "with_anomaly")
    }
    report["seeds"] = per_seed
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()

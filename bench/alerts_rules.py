"""The alert rules alone: CPU per reading of ``evaluate_readings`` over the synthetic cohort, no database.

Each patient's whole history is held (as the engine's history cache holds it) and every time group
of the patient is evaluated in time order with the metrics that arrived in it, as the engine does
page by page; with ``--anomaly`` the patient's model is trained on the first 45 days and used for
the readings after. Prints JSON: ``cpu_us_per_reading`` (the best of ``--repeat`` passes, process
CPU), the groups evaluated and the candidates the rules returned (equal before and after a change
of the rules' code). Run: ``.venv/bin/python -m bench.alerts_rules [--anomaly]``
"""

from __future__ import annotations

import argparse
import json
import time
from collections import defaultdict
from datetime import timedelta
from itertools import groupby

from alerts.anomaly.features import FeatureLog
from alerts.anomaly.methods import train_model
from alerts.config import PatientConfig, RulesConfig
from alerts.evaluator import evaluate_readings
from alerts.history import History
from alerts.model import Obs
from bench.cohort import generate


def _history(obs: list[Obs]) -> History:
    history = History()
    history.extend(obs)  # as the engine loads one
    return history


def main() -> None:
    ap = argparse.ArgumentParser(description="alert rules CPU per reading, in memory")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--anomaly", action="store_true")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    cohort = generate(args.seed, quiet=40, per_kind=2, days=90)
    rules = RulesConfig(anomaly={"enabled": args.anomaly})
    settings = cohort.settings()
    by_patient: dict[str, list[Obs]] = defaultdict(list)
    for pid, t, metric, value in cohort.readings:
        by_patient[pid].append(Obs(t, metric, value))
    work = []
    for pid, obs in sorted(by_patient.items()):
        config = PatientConfig.resolve(rules, settings.get(pid))
        model = None
        if args.anomaly:
            log = FeatureLog.from_history(_history(obs))
            model = train_model(log, cohort.start + timedelta(days=45), rules.anomaly)
        ordered = sorted(obs, key=lambda o: o.time)
        groups = [(at, frozenset(o.metric for o in g)) for at, g in groupby(ordered, key=lambda o: o.time)]
        work.append((obs, config, model, groups))
    best, candidates, evaluated = float("inf"), 0, 0
    for _ in range(args.repeat):
        # Fresh histories every pass: what the rules derive per reading is paid in every pass.
        histories = [_history(obs) for obs, _, _, _ in work]
        candidates = evaluated = 0
        cpu0 = time.process_time()
        for history, (_, config, model, groups) in zip(histories, work, strict=True):
            for at, metrics in groups:
                usable = model if model is not None and model.trained_through <= at else None
                candidates += len(evaluate_readings(history, at, metrics, config, usable).candidates)
                evaluated += 1
        best = min(best, time.process_time() - cpu0)
    out = {
        "seed": args.seed,
        "anomaly": args.anomaly,
        "readings": len(cohort.readings),
        "groups": evaluated,
        "candidates": candidates,
        "cpu_us_per_reading": round(best / len(cohort.readings) * 1e6, 2),
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main()

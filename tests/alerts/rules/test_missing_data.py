from __future__ import annotations

from datetime import timedelta

from alerts.model import Kind, Severity
from alerts.rules.missing_data import DeviceState, evaluate_devices, evaluate_missing_data, missing_data_status
from tests.alerts.helpers import at, config, history


def daily(metric: str, days: int, *, per_day: int = 1) -> tuple[str, list[tuple[float, float]]]:
    return metric, [(d * 24 + k * 12, 70.0) for d in range(days) for k in range(per_day)]


def test_a_daily_measurer_who_stops_is_missing_after_the_longer_of_72_h_and_4_gaps() -> None:
    h = history(daily("body_weight", 20))
    last = at(19 * 24)
    assert evaluate_missing_data(h, last + timedelta(hours=95), config()).candidates == ()
    (c,) = evaluate_missing_data(h, last + timedelta(hours=97), config()).candidates
    assert (c.rule, c.kind, c.metric, c.severity) == ("missing_data", Kind.MISSING_DATA, "body_weight", Severity.LOW)
    assert c.detail["missing"][0]["limit_h"] == 96.0
    assert [o.time for o in c.evidence] == [last]


def test_twice_daily_measurer_uses_the_72_h_floor() -> None:
    h = history(daily("spo2", 20, per_day=2))
    last = at(19 * 24 + 12)
    assert evaluate_missing_data(h, last + timedelta(hours=71), config()).candidates == ()
    assert evaluate_missing_data(h, last + timedelta(hours=73), config()).candidates


def test_an_occasional_measurement_is_not_expected() -> None:
    h = history(("glucose", [(d * 24, 100) for d in range(0, 20, 4)]))  # every 4th day: 5 of 14 days
    out = evaluate_missing_data(h, at(30 * 24), config())
    assert out.candidates == ()
    assert out.clear == frozenset()


def test_one_alert_lists_every_missing_metric() -> None:
    h = history(daily("spo2", 20), daily("heart_rate", 20), daily("body_weight", 25))
    (c,) = evaluate_missing_data(h, at(24 * 24), config()).candidates
    assert c.metric is None
    assert sorted(m["metric"] for m in c.detail["missing"]) == ["heart_rate", "spo2"]


def test_readings_resuming_clear_it_and_next_due_says_when_to_look_again() -> None:
    h = history(daily("spo2", 20))
    status = missing_data_status(h, at(19 * 24 + 1), config())
    assert status.outcome.clear == {"missing_data"}
    assert status.next_due == at(19 * 24) + timedelta(hours=96, seconds=1)


def test_explicit_expected_metrics_and_patient_limit() -> None:
    h = history(("glucose", [(0, 100)]))
    cfg = config({"expected_metrics": ["glucose"], "missing_data_after_h": 24})
    assert evaluate_missing_data(h, at(25), cfg).candidates
    assert evaluate_missing_data(h, at(23), cfg).clear == {"missing_data"}


def test_a_month_of_silence_is_no_longer_usual() -> None:
    h = history(daily("spo2", 20))
    assert evaluate_missing_data(h, at(19 * 24 + 29 * 24), config()).candidates == ()


def test_devices_not_seen_or_low_battery_and_agents_offline() -> None:
    now = at(0)
    devices = [
        DeviceState("device", "cuff-1", now - timedelta(days=8), 80),
        DeviceState("device", "oxi-1", now - timedelta(hours=1), 10),
        DeviceState("device", "scale-1", now - timedelta(hours=1), 90),
        DeviceState("agent", "pi-1", now - timedelta(hours=25)),
    ]
    out = evaluate_devices(devices, now, config())
    by_rule = {c.rule: c for c in out.candidates}
    assert set(by_rule) == {"missing_data:device:cuff-1", "missing_data:device:oxi-1", "missing_data:agent:pi-1"}
    assert by_rule["missing_data:device:cuff-1"].detail["not_seen_h"] == 192.0
    assert by_rule["missing_data:device:oxi-1"].detail["battery_pct"] == 10
    assert all(c.severity is Severity.LOW and c.metric is None for c in out.candidates)
    assert out.clear == {"missing_data:device:scale-1"}


# -- issue 14: monitoring pauses ----------------------------------------------------------------------


def test_nothing_is_missing_while_paused_and_silence_counts_from_the_pause_end() -> None:
    h = history(daily("body_weight", 20))
    last = at(19 * 24)
    pause = (last + timedelta(hours=12), last + timedelta(days=10))  # admitted to hospital
    during = missing_data_status(h, last + timedelta(days=5), config(), [pause])
    assert (during.outcome.candidates, during.outcome.clear) == ((), {"missing_data"})
    assert during.next_due == pause[1] + timedelta(seconds=1)
    after = pause[1] + timedelta(hours=95)
    assert evaluate_missing_data(h, after, config(), [pause]).candidates == ()  # 96 h from the pause end
    (c,) = evaluate_missing_data(h, pause[1] + timedelta(hours=97), config(), [pause]).candidates
    assert c.metric == "body_weight"
    assert evaluate_missing_data(h, pause[1] + timedelta(hours=97), config()).candidates  # without the pause too


def test_devices_and_agents_are_not_missing_while_paused() -> None:
    now = at(0)
    devices = [DeviceState("device", "cuff-1", now - timedelta(days=8), 80), DeviceState("agent", "pi-1", None)]
    pause = (now - timedelta(days=9), now + timedelta(days=1))
    out = evaluate_devices(devices, now, config(), [pause])
    assert (out.candidates, out.clear) == ((), {"missing_data:device:cuff-1", "missing_data:agent:pi-1"})
    ended = (now - timedelta(days=9), now - timedelta(days=2))
    assert evaluate_devices(devices, now, config(), [ended]).candidates == ()  # not seen since the end: 2 d

"""bench.ingest at tiny scale: every scenario runs against the real broker, ingest and database,
loses and duplicates nothing, and prints the figures it promises. No timing is asserted: the
figures themselves are the benchmark's business (docs/ingest.md), not the test's.

The benchmark is run as a subprocess (``python -m bench.ingest``), as a reader would run it: its
publisher processes, its RLIMIT_NOFILE and the broker's are its own.
"""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest

from bench.ingest_rig import check_ranges

ROOT = Path(__file__).resolve().parents[2]
SCENARIOS = ["live", "flood", "backfill", "reconnect_storm"]
COMPONENTS = {"ingest", "broker", "database", "publishers"}
FIGURES = {
    "envelopes_per_s",
    "readings_per_s",
    "p50_ms",
    "p99_ms",
    "lost",
    "duplicated",
    "cpu_us_per_envelope",
    "cpu_us_per_reading",
    "cpu_pct",
    "broker_rss_mb",
}
TINY = [
    "--agents", "20", "--publishers", "2", "--workers", "2",
    "--live-rate", "20", "--live-seconds", "3",
    "--flood-envelopes", "60",
    "--backfill-envelopes", "20", "--backfill-agents", "4",
    "--storm-backlog", "40", "--storm-down-s", "1",
    "--baseline-agents", "4", "--baseline-envelopes", "40",
    # After a broker restart Mosquitto 2.0.11 drops what agents publish before ingest subscribes
    # again (it does not persist shared subscriptions); agents send it again after this timeout.
    "--receipt-timeout-s", "3",
    "--timeout", "120",
]  # fmt: skip


def run_bench(*extra: str) -> list[dict[str, Any]]:
    proc = subprocess.run(
        [sys.executable, "-m", "bench.ingest", *TINY, *extra],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=280,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    return [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]


@pytest.fixture(scope="module")
def every_scenario() -> list[dict[str, Any]]:
    return run_bench()


@pytest.mark.slow
@pytest.mark.parametrize("scenario", SCENARIOS)
def test_each_scenario_stores_every_reading_once_and_reports_its_figures(
    every_scenario: list[dict[str, Any]], scenario: str
) -> None:
    final = every_scenario[-1]
    assert list(final) == SCENARIOS  # the last line: one key per scenario run, in order
    assert {scenario: final[scenario]} in every_scenario[:-1]  # printed as it finished, same figures
    r = final[scenario]
    assert r.keys() >= FIGURES
    assert r["lost"] == 0
    assert r["duplicated"] == 0
    assert r["unreceipted"] == 0
    assert r["bad_receipts"] == 0
    assert r["verified_receipts"] >= 1  # signatures checked, not only decoded
    assert r["readings"] == r["envelopes"] * r["readings_per_envelope"] > 0
    assert r["published_envelopes"] == r["envelopes"]
    assert r["latency_samples"] == r["envelopes"]  # every envelope's receipt came back
    assert r["cpu_pct"].keys() >= COMPONENTS | {"machine", "other"}
    assert r["cpu_us_per_envelope"].keys() >= COMPONENTS | {"server"}
    assert r["cpu_us_per_reading"].keys() >= COMPONENTS | {"server"}


@pytest.mark.slow
def test_scenarios_have_their_shapes(every_scenario: list[dict[str, Any]]) -> None:
    final = every_scenario[-1]
    assert final["live"]["readings_per_envelope"] == 1
    assert final["live"]["offered_envelopes_per_s"] == 20
    assert final["flood"]["readings_per_envelope"] == 1
    assert final["flood"]["baseline_envelopes_per_s"] is not None
    assert "ratio_vs_baseline" in final["flood"]
    assert final["backfill"]["readings_per_envelope"] == 20
    assert final["backfill"]["agents"] == 4
    storm = final["reconnect_storm"]
    assert storm["backlog_readings_per_agent"] == 40
    assert storm["agents"] == 20
    assert storm["reconnects"] >= 20  # every agent lost its connection and came back
    assert storm["connected_after"] == 20
    assert storm["drain_s"] > 0


@pytest.mark.slow
def test_one_scenario_alone() -> None:
    lines = run_bench("--scenario", "backfill")
    assert list(lines[-1]) == ["backfill"]
    assert lines[-1]["backfill"]["lost"] == lines[-1]["backfill"]["duplicated"] == 0


def test_the_database_check_sees_a_lost_and_a_duplicated_reading(db: str) -> None:
    """``lost`` and ``duplicated`` come from check_ranges: it must see both when they happen."""
    t = datetime(2026, 1, 1, tzinfo=UTC)
    with psycopg.connect(db) as conn:
        conn.execute("INSERT INTO organizations (org_id, name) VALUES ('o', 'O')")
        conn.execute("INSERT INTO patients (patient_id, org_id, display_name) VALUES ('p', 'o', 'P')")
        rows = [(1, t), (2, t), (4, t), (5, t), (5, t.replace(second=1))]  # 3 lost, 5 twice (another time)
        for seq, time in rows:
            conn.execute(
                "INSERT INTO readings (time, org_id, patient_id, agent_id, device_id, metric, value, seq) "
                "VALUES (%s, 'o', 'p', 'a-1', 'd', 'heart_rate', 60, %s)",
                (time, seq),
            )
    assert check_ranges(db, [("a-1", 1, 5)]) == {"expected": 5, "distinct": 4, "rows": 5}
    assert check_ranges(db, [("a-1", 1, 2), ("a-2", 1, 3)]) == {"expected": 5, "distinct": 2, "rows": 2}

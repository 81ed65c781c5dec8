"""``bench.soak`` end to end at toy scale: the demo's platform on the test database, four simulated
agents for a few rounds; nothing lost, every process's memory reported (the hour-long run with 200
agents is the lead's: ``python -m bench.soak --minutes 60``)."""

from __future__ import annotations

import pytest

from bench.soak import parse_args, run


@pytest.mark.slow
def test_a_short_soak_loses_nothing_and_reports_every_process(db: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VIGIL_DATABASE_URL", db)
    monkeypatch.setenv("VIGIL_CONFIG", "")  # the demo platform sets it for its commands: restored afterwards
    report = run(parse_args(["--minutes", "0.05", "--agents", "4", "--interval", "1", "--alerts-settle-s", "3"]))
    assert report["connected"] == 4
    assert report["rounds"] >= 1
    readings = report["readings"]
    assert readings["published"] == 4 * 5 * report["rounds"]
    assert (readings["lost"], readings["duplicates_stored"]) == (0, 0)
    names = {key.split(":")[0] for key in report["rss_mb"]["end"]}
    assert {"mosquitto", "ingest", "alerts", "publisher", "postgres-backend", "soak"} <= names
    assert set(report["rss_mb"]["growth"]) == set(report["rss_mb"]["start"]) & set(report["rss_mb"]["end"])
    assert report["alerts"]["readings_evaluated"] <= readings["published"]

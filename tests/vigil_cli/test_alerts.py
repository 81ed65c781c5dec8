"""``vigil alerts``, the composition root of the alerts -> consult seam: alerts owns the walk and the
``EscalationSink`` Protocol, consult the sinks, and ``vigil_cli.alerts`` wires consult's
``NotifyingSink`` into the engine (alerts itself never imports consult: an import-linter contract)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest
import typer
from typer.testing import CliRunner

from alerts.cli import build_app, commands
from consult.notify.sink import NotifyingSink
from consult.sinks import RecordingSink
from store.alerts import NewAlert, insert_alert
from tests.alerts.conftest import add_patients
from vigil_cli import alerts as alerts_root
from vigil_testkit import procs


def _names(app: typer.Typer) -> set[str]:
    group = typer.main.get_group(app)
    return set(group.commands)


def test_the_group_is_the_engine_and_every_command() -> None:
    assert _names(alerts_root.app) == {"run"} | _names(commands)
    assert {"replay", "ack", "resolve", "policy", "baseline"} <= _names(alerts_root.app)
    assert "run" not in _names(commands)  # the engine exists only with a sink wired in


def test_the_root_wires_the_notifying_sink() -> None:
    assert isinstance(alerts_root.notifying_sink(), NotifyingSink)


def test_the_sink_is_built_only_when_the_engine_starts() -> None:
    built: list[object] = []

    def factory() -> RecordingSink:
        built.append(sink := RecordingSink())
        return sink

    app = build_app(factory)
    runner = CliRunner()
    assert runner.invoke(app, ["--help"]).exit_code == 0
    assert runner.invoke(app, ["run", "--help"]).exit_code == 0
    assert runner.invoke(app, ["policy", "--help"]).exit_code == 0
    assert built == []


def _wait(predicate, engine: subprocess.Popen[bytes], log: Path, what: str, timeout: float = 60.0):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while (found := predicate()) is None:
        if engine.poll() is not None:
            pytest.fail(f"engine exited with {engine.returncode} waiting for {what}:\n{log.read_text()[-3000:]}")
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}:\n{log.read_text()[-3000:]}")
        time.sleep(0.05)
    return found


def test_vigil_alerts_run_delivers_through_the_notifying_sink(db: str, tmp_path: Path) -> None:
    """The real command: an open critical alert's first step is handed to NotifyingSink (its result says
    what was queued and for how many recipients), not recorded as done by a RecordingSink. The alert
    is stored directly, so the walk does not wait for the readings feed (whose horizon any long
    transaction elsewhere on the server holds back)."""
    with psycopg.connect(db, autocommit=True) as conn:
        conn.execute("INSERT INTO organizations VALUES ('o1', 'Clinic')")
        add_patients(conn, ["p1"])
        log = tmp_path / "engine.log"
        cmd = [sys.executable, "-m", "vigil_cli", "alerts", "run", "--database-url", db, "--poll-interval", "0.2"]
        with log.open("ab") as out:
            engine = procs.popen(cmd, stdout=out, stderr=out, env={**os.environ, "VIGIL_CONFIG": ""})
        try:
            now = datetime.now(UTC)
            alert = NewAlert("o1", "p1", "threshold:glucose:critical_low", "threshold", "glucose", "critical",
                             "low glucose", [], {}, now, now)  # fmt: skip
            insert_alert(conn, alert)
            result = _wait(
                lambda: conn.execute(
                    "SELECT result FROM alert_actions WHERE action = 'notify_care_team' AND status = 'done'"
                ).fetchone(),
                engine,
                log,
                "the first escalation step",
            )[0]
        finally:
            engine.send_signal(signal.SIGTERM)
            engine.wait(30)
    assert engine.returncode == 0, log.read_text()[-3000:]
    doc = result if isinstance(result, dict) else json.loads(result)
    assert doc["delivery"] == "no_recipients"  # NotifyingSink: the patient has no care team yet
    assert doc["recipients"] == 0
    assert doc["notifications"] == 0

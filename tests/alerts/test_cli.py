"""``vigil alerts`` clinician commands (in process, through typer's runner)."""

from __future__ import annotations

import json
from pathlib import Path

import psycopg
from typer.testing import CliRunner

from alerts.model import Severity
from tests.alerts.conftest import add_patients
from tests.alerts.helpers import T0
from tests.alerts.test_service import trigger
from vigil_cli.alerts import app

runner = CliRunner()


def test_ack_assign_snooze_resolve_and_list(db: str, conn: psycopg.Connection) -> None:
    add_patients(conn, ["p1"])
    alert_id = trigger(conn, Severity.HIGH, T0)
    url = ["--database-url", db]
    done = runner.invoke(app, ["assign", str(alert_id), "--by", "nurse-1", "--to", "dr-b", *url])
    assert done.exit_code == 0, done.output
    assert json.loads(done.stdout)["assignee"] == "dr-b"
    done = runner.invoke(app, ["snooze", str(alert_id), "--by", "dr-b", "--minutes", "30", *url])
    assert json.loads(done.stdout)["snoozed_until"] is not None
    done = runner.invoke(app, ["ack", str(alert_id), "--by", "dr-b", "--note", "calling", *url])
    assert json.loads(done.stdout)["state"] == "acknowledged"
    done = runner.invoke(app, ["ack", str(alert_id), "--by", "dr-b", *url])
    assert done.exit_code == 1
    assert "cannot acknowledge alert" in done.output
    done = runner.invoke(app, ["resolve", str(alert_id), "--by", "dr-b", "--note", "stable on re-check", *url])
    assert json.loads(done.stdout)["state"] == "resolved"
    done = runner.invoke(app, ["list", "--org", "o1", "--state", "resolved", *url])
    assert [json.loads(line)["alert_id"] for line in done.stdout.splitlines()] == [alert_id]


def test_policy_show_default_and_set(db: str, conn: psycopg.Connection, tmp_path: Path) -> None:
    url = ["--database-url", db]
    shown = json.loads(runner.invoke(app, ["policy", "o1", *url]).stdout)
    assert shown["version"] is None
    assert shown["policy"]["critical"][-1]["action"] == "request_video_consult"
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"critical": [{"action": "page_backup"}]}))
    done = runner.invoke(app, ["policy", "o1", "--set", str(bad), *url])
    assert done.exit_code == 2
    good = tmp_path / "good.json"
    good.write_text(json.dumps({"critical": [{"action": "request_video_consult", "after_min": 10}]}))
    done = runner.invoke(app, ["policy", "o1", "--set", str(good), *url])
    assert done.exit_code == 0, done.output
    assert json.loads(done.stdout)["version"] == 1

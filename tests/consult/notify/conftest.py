"""Fixtures for notification delivery: the API tests' small world (organisations, a care team with
a nurse and a clinician, a patient with a portal account), a real SMTP server with STARTTLS, an
in-process worker on a ManualClock, and ``vigil notify run`` as a real process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import psycopg
import pytest

from alerts.escalation import run_escalations
from consult.notify.channels import InAppChannel
from consult.notify.links import AckLinkSigner
from consult.notify.sink import NotifyingSink
from consult.notify.smtp import SmtpChannel, SmtpOptions
from consult.notify.worker import Worker, WorkerOptions
from rpm_core.backoff import BackoffPolicy
from rpm_core.clock import ManualClock
from store.alerts import NewAlert, insert_alert
from tests.clinician_api.world import SECRET_KEY, T0, World, build
from vigil_testkit import procs
from vigil_testkit.smtp import SmtpServer

PUBLIC = "https://vigil.test"
SENDER = "Vigil <vigil@vigil.test>"
PATIENT_NAME = "Zebulon Quartermaine"
VALUE = 83.7  # a reading value that must never leave Vigil in a notification
VIGIL = [sys.executable, "-m", "vigil_cli"]


@pytest.fixture
def world(db: str) -> World:
    w = build(db)
    with psycopg.connect(db, autocommit=True) as conn:
        conn.execute("UPDATE patients SET display_name = %s WHERE patient_id = 'p1'", (PATIENT_NAME,))
    return w


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(T0)


@pytest.fixture
def smtp(tmp_path: Path) -> Iterator[SmtpServer]:
    server = SmtpServer(tmp_path / "smtp").start()
    try:
        yield server
    finally:
        server.stop()


def smtp_channel(smtp: SmtpServer) -> SmtpChannel:
    return SmtpChannel(SmtpOptions(host=smtp.host, port=smtp.port, sender=SENDER, ca_file=smtp.ca_file, timeout_s=10))


def make_worker(url: str, smtp: SmtpServer, clock: ManualClock, **options) -> Worker:
    opts = {
        "public_url": PUBLIC,
        "backoff": BackoffPolicy(base_s=30.0, factor=2.0, cap_s=3600.0),
        "jitter": 0.0,
        "batch": 50,
        **options,
    }
    channels = {"in_app": InAppChannel(), "email": smtp_channel(smtp), **opts.pop("channels", {})}
    w = Worker(url, WorkerOptions(**opts), channels, AckLinkSigner.from_secret(SECRET_KEY), clock=clock)
    w.connect()
    return w


@pytest.fixture
def worker(world: World, smtp: SmtpServer, clock: ManualClock) -> Iterator[Worker]:
    w = make_worker(world.url, smtp, clock)
    try:
        yield w
    finally:
        w.close_channels()
        w.close()


def open_alert(url: str, patient: str = "p1", severity: str = "critical", *, at=T0, org: str = "o1") -> int:
    """An alert whose escalation walk is due at ``at`` (as the engine opens one)."""
    with psycopg.connect(url, autocommit=True) as conn, conn.transaction():
        return insert_alert(
            conn,
            NewAlert(
                org,
                patient,
                "threshold:spo2:low",
                "threshold",
                "spo2",
                severity,
                f"SpO2 {VALUE} % below 85 %",
                [{"metric": "spo2", "value": VALUE}],
                {"value": VALUE},
                at,
                at,
            ),
        )


def escalate(url: str, now) -> int:
    """The alert engine's escalation step (alerts.escalation.run_escalations) with the real sink."""
    with psycopg.connect(url, autocommit=True) as conn:
        return run_escalations(conn, now, NotifyingSink())


def minutes(n: float) -> timedelta:
    return timedelta(minutes=n)


# -- the worker as a real process ------------------------------------------------------------------


def notify_env(url: str, smtp: SmtpServer, **extra: str) -> dict[str, str]:
    env = {
        **os.environ,
        "VIGIL_CONFIG": "",
        "VIGIL_DATABASE_URL": url,
        "VIGIL_API_SECRET_KEY": SECRET_KEY,
        "VIGIL_API_PUBLIC_URL": PUBLIC,
        "VIGIL_NOTIFY_SMTP_HOST": smtp.host,
        "VIGIL_NOTIFY_SMTP_PORT": str(smtp.port),
        "VIGIL_NOTIFY_SMTP_CA_FILE": str(smtp.ca_file),
        "VIGIL_NOTIFY_SMTP_FROM": SENDER,
        "VIGIL_NOTIFY_POLL_INTERVAL_S": "0.2",
        "VIGIL_NOTIFY_BACKOFF_BASE_S": "0.2",
    }
    env.update(extra)
    return env


def start_worker(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return procs.popen([*VIGIL, "notify", "run"], stdout=out, stderr=out, env=env)


def kill9(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)


def stop(proc: subprocess.Popen[bytes]) -> int:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            return proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            kill9(proc)
    return proc.returncode

"""``vigil demo [--headless] [--duration SECONDS] [--dir DIR]``: the whole platform on one machine.

Interactive: a live terminal view (patients' vitals with sparklines, agents and outboxes, the
alert queue with escalation steps). ``--headless``: progress on stderr and, as the last line of
stdout, one JSON summary. Either way Ctrl-C (SIGINT) or SIGTERM stops every process cleanly:
agents first (what they hold stays in their durable outboxes for the next run), then the alert
engine, ingest (it drains and acknowledges what it committed), the broker and the database.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Annotated, Any

import typer

import vigil_cli
from store import overview
from store.connection import Connection, connect
from vigil_cli.demo.database import EmbeddedPostgresError, postgres_binaries
from vigil_cli.demo.platform import (
    DETERIORATING,
    ORG,
    PATIENTS,
    STALL_AFTER_S,
    DemoError,
    DemoLayout,
    DemoPlatform,
    open_database,
)
from vigil_cli.demo.system_user import (
    SystemUserError,
    become,
    check_access,
    closed_directories,
    ensure_demo_user,
    hand_over,
    private_view,
)

__all__ = ["app"]

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
_REFRESH_S = 1.0


class _Progress:
    """Set-up messages: on stderr, and in the live view's footer while that is on screen."""

    def __init__(self, *, echo: bool) -> None:
        self.lines: list[str] = []
        self.echo = echo
        self._t0 = time.monotonic()

    def __call__(self, message: str) -> None:
        line = f"[{time.monotonic() - self._t0:6.1f} s] {message}"
        self.lines.append(line)
        if self.echo:
            print(line, file=sys.stderr, flush=True)


@app.callback(invoke_without_command=True)
def demo(
    headless: Annotated[
        bool, typer.Option("--headless", help="No live view; print a JSON summary at the end.")
    ] = False,
    duration: Annotated[
        float | None, typer.Option("--duration", min=1, help="Stop by itself after this many seconds.")
    ] = None,
    directory: Annotated[
        Path, typer.Option("--dir", help="Demo data (database, keys, outboxes, logs); a second run resumes it.")
    ] = Path(".vigil-demo"),
    history_days: Annotated[
        int,
        typer.Option("--history-days", min=0, max=90, help="Days of stored device history uploaded on first start."),
    ] = 28,
    stall_after: Annotated[
        float,
        typer.Option(
            "--stall-after",
            min=5,
            help="Stop with the agents' last errors when no reading was stored for this many seconds.",
        ),
    ] = STALL_AFTER_S,
) -> None:
    """Run the whole platform on this machine: database, broker, ingest, alerts, five patients' agents."""
    stop = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    progress = _Progress(echo=True)
    layout = DemoLayout(directory.resolve())
    try:
        _leave_root(layout, progress)
        summary = _run(
            layout, progress, stop, headless=headless, duration=duration, history_days=history_days,
            stall_after=stall_after,
        )  # fmt: skip
    except (DemoError, SystemUserError, EmbeddedPostgresError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc
    if headless:
        print(json.dumps(summary), flush=True)
    else:
        again = "./run.sh demo" + ("" if directory == Path(".vigil-demo") else f" --dir {layout.root}")
        typer.echo(
            f"stopped: {summary['readings_stored']} readings stored, {summary['alerts_opened']} alerts "
            f"({summary['alerts_escalated']} escalated, {summary['consult_requests']} consult requests). "
            f"Data kept in {layout.root}: run `{again}` again to resume."
        )


def _leave_root(layout: DemoLayout, say: _Progress) -> None:
    """Started as root: carry on as the demo's unprivileged system user (see ``system_user``)."""
    if os.geteuid() != 0:
        return
    user = ensure_demo_user(say)
    layout.root.mkdir(parents=True, exist_ok=True)
    executables = [] if os.environ.get("VIGIL_DATABASE_URL") else [postgres_binaries() / "postgres"]
    writable = [Path(os.environ[v]) for v in ("VIGIL_KEY_DIR", "VIGIL_BROKER_DIR") if os.environ.get(v)]
    code = [Path(sys.base_prefix), Path(sys.prefix), Path(vigil_cli.__file__).resolve().parent.parent]
    closed = closed_directories([*code, *executables, layout.root, *writable], user)
    if closed:
        try:
            private_view([*code, *executables, layout.root, *writable], user)
        except OSError as exc:
            raise SystemUserError(
                f"{', '.join(map(str, closed))} cannot be entered by the system user {user.name} and this machine "
                f"does not allow a private mount namespace ({exc}). Put Vigil where other users can read it (under "
                f"/opt or /srv, not in a private home such as /root), keep --dir there too, or run ./run.sh demo "
                f"as a normal user"
            ) from exc
        say(
            f"{', '.join(map(str, closed))} is closed to {user.name}: the demo sees only the entries it needs "
            f"there (a private mount namespace; nothing changes on disk)"
        )
    check_access(user, layout.root, writable=writable, executables=executables)
    layout.home.mkdir(exist_ok=True)
    hand_over(layout.root, user)
    become(user, layout.home)
    os.chdir(layout.root)  # the caller's directory may be one the user cannot enter
    say(f"started as root: running the database, broker, services and agents as the system user {user.name}")


def _run(
    layout: DemoLayout,
    progress: _Progress,
    stop: threading.Event,
    *,
    headless: bool,
    duration: float | None,
    history_days: int,
    stall_after: float = STALL_AFTER_S,
) -> dict[str, Any]:
    started = time.monotonic()
    layout.root.mkdir(parents=True, exist_ok=True)
    with open_database(layout, progress) as (url, database):
        platform = DemoPlatform(layout, url, progress, database_label=database, history_days=history_days)
        try:
            platform.prepare()
            platform.start_broker()
            platform.start_services()
            platform.start_api()
            _announce(platform, progress)
            platform.start_agents()
            with connect(url, application_name="vigil-demo") as conn:
                firsts = _watch(
                    conn, platform, progress, stop, headless=headless, duration=duration, started=started,
                    stall_after=stall_after,
                )  # fmt: skip
        finally:
            progress("stopping: agents, alert engine, ingest (drains), broker, database")
            platform.supervisor.stop_all()
        with connect(url, application_name="vigil-demo") as conn:
            return _summary(conn, platform, database, started, firsts)


def _announce(platform: DemoPlatform, progress: _Progress) -> None:
    """The dashboard's address and the demo's accounts (a demo only: it prints passwords)."""
    progress(f"dashboard and API: {platform.api_url} (open it in a browser on this machine)")
    for a in platform.accounts:
        progress(
            f"  {a['role']}: {a['email']}  password {a['password']}  TOTP secret {a['totp_secret']} "
            f"(add it to an authenticator app, or: oathtool --totp -b {a['totp_secret']})"
        )


def _watch(
    conn: Connection,
    platform: DemoPlatform,
    progress: _Progress,
    stop: threading.Event,
    *,
    headless: bool,
    duration: float | None,
    started: float,
    stall_after: float = STALL_AFTER_S,
) -> dict[str, float | None]:
    """Until stopped or ``duration`` passed: refresh the view (or log progress), watch the children.

    A demo that stores nothing for ``stall_after`` seconds (agents that cannot reach the broker,
    an ingest that cannot store) stops with a DemoError naming each agent's last error.
    """
    from rich.console import Console
    from rich.live import Live

    from vigil_cli.demo.view import render, take_snapshot

    outboxes = {p: platform.layout.outbox(p) for p, _ in platform.patients}
    header = f"database: {platform.database_label}  ·  broker: {platform.broker}"
    firsts: dict[str, float | None] = {"first_reading_s": None, "first_alert_s": None, "first_consult_request_s": None}
    baseline = overview.org_counts(conn, ORG)
    stored, stored_at = baseline.readings, time.monotonic()
    live = None if headless else Live(console=Console(), refresh_per_second=2, screen=False)
    last_log = 0.0
    progress.echo = live is None  # the live view shows the last lines itself
    with live if live is not None else contextlib.nullcontext():
        while not stop.is_set():
            now = time.monotonic()
            if duration is not None and now - started >= duration:
                break
            platform.check_children()
            snap = take_snapshot(conn, ORG, outboxes)
            c = snap.counts
            if c.readings > stored:
                stored, stored_at = c.readings, now
            elif now - stored_at >= stall_after:
                raise DemoError(platform.stall_report(now - stored_at))
            if firsts["first_reading_s"] is None and c.readings > baseline.readings:
                firsts["first_reading_s"] = round(now - started, 1)
                progress(f"first live readings stored ({c.readings} in the database)")
            if firsts["first_alert_s"] is None and c.alerts_opened > baseline.alerts_opened:
                firsts["first_alert_s"] = round(now - started, 1)
                progress("first alert opened")
            if firsts["first_consult_request_s"] is None and c.consult_requests > baseline.consult_requests:
                firsts["first_consult_request_s"] = round(now - started, 1)
                progress("first video consultation requested (the escalation reached its last step)")
            if live is not None:
                live.update(render(snap, header=header, started=started, now_mono=now, progress=progress.lines))
            elif now - last_log >= 10:
                last_log = now
                progress(
                    f"{c.readings} readings from {c.devices} devices; {c.alerts_open} open alerts, "
                    f"{c.alerts_escalated} escalated, {c.consult_requests} consult requests"
                )
            stop.wait(_REFRESH_S)
    progress.echo = True
    return firsts


def _summary(
    conn: Connection,
    platform: DemoPlatform,
    database: str,
    started: float,
    firsts: dict[str, float | None],
) -> dict[str, Any]:
    c = overview.org_counts(conn, ORG)
    devices = overview.device_readings(conn, ORG)
    alerts = overview.alert_queue(conn, ORG, limit=100)
    return {
        "readings_stored": c.readings,
        "devices": c.devices,
        "patients": c.patients,
        "agents": c.agents,
        "alerts_opened": c.alerts_opened,
        "alerts_open": c.alerts_open,
        "alerts_escalated": c.alerts_escalated,
        "consult_requests": c.consult_requests,
        "broker": platform.broker,
        "database": database,
        "first_run": platform.first_run,
        "deteriorating_patient": DETERIORATING,
        "deteriorating_patient_name": dict(PATIENTS)[DETERIORATING],
        "seconds": round(time.monotonic() - started, 1),
        **firsts,
        "stopped_at": datetime.now(UTC).isoformat(),
        "demo_dir": str(platform.layout.root),
        "api_url": platform.api_url,
        "demo_accounts": platform.accounts,
        "readings_by_device": [
            {
                "patient_id": d.patient_id,
                "agent_id": d.agent_id,
                "device_id": d.device_id,
                "readings": d.readings,
                "metrics": list(d.metrics),
                "oldest": d.oldest.isoformat(),
                "newest": d.newest.isoformat(),
            }
            for d in devices
        ],
        "open_alerts": [
            {
                "patient_id": a.patient_id,
                "kind": a.kind,
                "metric": a.metric,
                "severity": a.severity,
                "state": a.state,
                "last_action": a.last_action,
                "consult_requested": a.consult_requested,
            }
            for a in alerts
        ],
    }

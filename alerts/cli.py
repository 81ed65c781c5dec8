"""``vigil alerts``: the alert engine (the default command), replay, and clinician actions.

Settings are built once per command (``AlertsSettings``: environment ``VIGIL_*`` over the TOML
file) and passed down. ``replay`` needs no database. The engine and the replay (pandas,
scikit-learn) are imported by their commands only, so that ``vigil --help`` and the other groups
do not pay for them.
"""

from __future__ import annotations

import json
import logging
import signal
import sys
import threading
from datetime import timedelta
from pathlib import Path
from types import FrameType
from typing import Annotated, Any

import typer

from alerts import service
from alerts.config import RulesConfig
from alerts.errors import AlertsConfigError, LifecycleError, ReplayInputError
from alerts.escalation import DEFAULT_POLICY, EscalationPolicy
from alerts.replay_csv import parse_readings
from alerts.settings import AlertsSettings
from rpm_core.clock import SystemClock
from rpm_core.errors import VigilError
from rpm_core.settings import load_settings
from store import alerts as alert_store
from store.connection import Connection, connect
from store.errors import DatabaseUnavailable, MigrationError

__all__ = ["app"]

log = logging.getLogger(__name__)

app = typer.Typer(add_completion=False, invoke_without_command=True, help="The alert engine and replay.")

ConfigOpt = Annotated[Path | None, typer.Option("--config", help="TOML settings file (or VIGIL_CONFIG).")]
UrlOpt = Annotated[str | None, typer.Option("--database-url", help="PostgreSQL URL (or VIGIL_DATABASE_URL).")]
ByOpt = Annotated[str, typer.Option("--by", help="Who does it (user id).")]


def _settings(config: Path | None, **overrides: Any) -> AlertsSettings:
    try:
        return load_settings(AlertsSettings, config_file=config, **overrides)
    except VigilError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc


@app.callback()
def main(ctx: typer.Context, config: ConfigOpt = None, database_url: UrlOpt = None) -> None:
    """Without a subcommand: run the engine (like ``vigil alerts run``)."""
    if ctx.invoked_subcommand is None:
        run(config=config, database_url=database_url)


@app.command("run")
def run(
    config: ConfigOpt = None,
    database_url: UrlOpt = None,
    partitions: Annotated[int | None, typer.Option(help="Patient partitions (same on every worker).")] = None,
    poll_interval: Annotated[float | None, typer.Option(help="Seconds between polls without NOTIFY.")] = None,
    schedule_interval: Annotated[float | None, typer.Option(help="Seconds between scheduled rounds.")] = None,
    batch_limit: Annotated[int | None, typer.Option(help="Readings per transaction.")] = None,
) -> None:
    """Run an engine worker until SIGTERM/SIGINT; start several to share the patients."""
    settings = _settings(
        config,
        database_url=database_url,
        alerts_partitions=partitions,
        alerts_poll_interval_s=poll_interval,
        alerts_schedule_interval_s=schedule_interval,
        alerts_batch_limit=batch_limit,
    )
    logging.getLogger("alerts").setLevel(logging.INFO)
    stop = threading.Event()

    def _stop(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    from alerts.engine import Engine  # heavy (pandas, scikit-learn): only this command needs it
    from consult.notify.sink import NotifyingSink  # escalation steps become notifications (`vigil notify run`)

    engine = Engine(settings, clock=SystemClock(), sink=NotifyingSink(), stop=stop)
    log.info("alert engine starting (%d partitions)", settings.alerts_partitions)
    try:
        engine.run()
    except MigrationError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc
    log.info("alert engine stopped: %s", engine.stats)


@app.command("replay")
def replay(
    readings: Annotated[Path, typer.Argument(help="CSV with header patient_id,time,metric,value ('-': stdin).")],
    config: ConfigOpt = None,
    patients: Annotated[
        Path | None, typer.Option("--patients", help="JSON object: patient_id -> patient settings document.")
    ] = None,
    anomaly: Annotated[bool, typer.Option("--anomaly/--no-anomaly", help="Use the anomaly models.")] = True,
    skip_bad_rows: Annotated[
        bool, typer.Option("--skip-bad-rows", help="Skip and report bad rows instead of rejecting the file.")
    ] = False,
    tick_minutes: Annotated[float, typer.Option(help="Replay-time step of the time-based rules.")] = 60.0,
) -> None:
    """Print one JSON object per alert that would have opened (stdout); progress on stderr."""
    rules = _settings(config).alerts_rules
    try:
        settings_doc = _patient_settings(patients)
        if str(readings) == "-":
            parsed, problems = parse_readings(sys.stdin, skip_bad=skip_bad_rows)
        else:
            with readings.open(newline="", encoding="utf-8-sig") as f:
                parsed, problems = parse_readings(f, skip_bad=skip_bad_rows)
    except ReplayInputError as exc:
        for line, why in exc.problems[:20]:
            typer.echo(f"error: {readings}: line {line}: {why}", err=True)
        if len(exc.problems) > 20:
            typer.echo(f"error: ... and {len(exc.problems) - 20} more bad lines", err=True)
        raise typer.Exit(2) from exc
    except (OSError, UnicodeDecodeError, AlertsConfigError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    for line, why in problems:
        typer.echo(f"skipped: {readings}: line {line}: {why}", err=True)
    _replay(parsed, rules, settings_doc, anomaly=anomaly, tick=timedelta(minutes=tick_minutes))


def _patient_settings(path: Path | None) -> dict[str, Any]:
    if path is None:
        return {}
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise AlertsConfigError(f"cannot read patient settings {path}: {exc}") from exc
    if not isinstance(doc, dict) or not all(isinstance(v, dict) for v in doc.values()):
        raise AlertsConfigError(f"{path}: expected an object of patient_id -> settings object")
    return doc


def _replay(
    parsed: list[Any], rules: RulesConfig, settings_doc: dict[str, Any], *, anomaly: bool, tick: timedelta
) -> None:
    from alerts.replay import Replayer  # heavy (pandas, scikit-learn)

    try:
        replayer = Replayer(rules, patient_settings=settings_doc, anomaly=anomaly, tick=tick)
    except AlertsConfigError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    out = sys.stdout
    replayer.on_progress = lambda n: typer.echo(f"replayed {n} of {len(parsed)} readings", err=True)
    for alert in replayer.run(parsed):
        out.write(json.dumps(alert.to_json(), separators=(",", ":")) + "\n")
        out.flush()
    typer.echo(f"replayed {replayer.readings} readings: {len(replayer.opened)} alerts opened", err=True)


# -- clinician actions ---------------------------------------------------------------------------


def _conn(config: Path | None, database_url: str | None) -> Connection:
    settings = _settings(config, database_url=database_url)
    try:
        return connect(settings.database_url, application_name="vigil-alerts-cli")
    except DatabaseUnavailable as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc


def _print_alert(row: alert_store.AlertRow) -> None:
    typer.echo(
        json.dumps(
            {
                "alert_id": row.alert_id,
                "patient_id": row.patient_id,
                "rule": row.rule,
                "kind": row.kind,
                "metric": row.metric,
                "severity": row.severity,
                "state": row.state,
                "assignee": row.assignee,
                "opened_at": row.opened_at.isoformat(),
                "snoozed_until": row.snoozed_until.isoformat() if row.snoozed_until else None,
                "summary": row.summary,
            }
        )
    )


def _act(config: Path | None, database_url: str | None, fn: Any, alert_id: int, **kw: Any) -> None:
    with _conn(config, database_url) as conn:
        try:
            row = fn(conn, alert_id, now=SystemClock().now(), **kw)
        except LifecycleError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(1) from exc
    _print_alert(row)


@app.command("ack")
def ack(
    alert_id: int,
    by: ByOpt,
    note: Annotated[str | None, typer.Option()] = None,
    config: ConfigOpt = None,
    database_url: UrlOpt = None,
) -> None:
    """Acknowledge an open alert (stops its escalation)."""
    _act(config, database_url, service.acknowledge, alert_id, by=by, note=note)


@app.command("resolve")
def resolve(
    alert_id: int,
    by: ByOpt,
    note: Annotated[str, typer.Option(help="Why it is resolved (required).")],
    config: ConfigOpt = None,
    database_url: UrlOpt = None,
) -> None:
    """Resolve an alert with a note."""
    _act(config, database_url, service.resolve, alert_id, by=by, note=note)


@app.command("assign")
def assign(
    alert_id: int,
    by: ByOpt,
    to: Annotated[str | None, typer.Option("--to", help="Assignee (omit: unassign).")] = None,
    config: ConfigOpt = None,
    database_url: UrlOpt = None,
) -> None:
    """Assign an alert to a clinician."""
    _act(config, database_url, service.assign, alert_id, by=by, assignee=to)


@app.command("snooze")
def snooze(
    alert_id: int,
    by: ByOpt,
    minutes: Annotated[float, typer.Option(min=1)] = 60.0,
    note: Annotated[str | None, typer.Option()] = None,
    config: ConfigOpt = None,
    database_url: UrlOpt = None,
) -> None:
    """Snooze an alert's escalation (a worse severity ends the snooze at once)."""
    until = SystemClock().now() + timedelta(minutes=minutes)
    _act(config, database_url, service.snooze, alert_id, by=by, until=until, note=note)


@app.command("list")
def list_cmd(
    org: Annotated[str | None, typer.Option()] = None,
    patient: Annotated[str | None, typer.Option()] = None,
    state: Annotated[list[str] | None, typer.Option(help="open | acknowledged | resolved (repeatable).")] = None,
    limit: int = 100,
    config: ConfigOpt = None,
    database_url: UrlOpt = None,
) -> None:
    """Alerts as JSON lines, newest first."""
    with _conn(config, database_url) as conn:
        rows = alert_store.list_alerts(conn, org_id=org, patient_id=patient, states=state, limit=limit)
    for row in rows:
        _print_alert(row)


@app.command("policy")
def policy(
    org: str,
    set_file: Annotated[Path | None, typer.Option("--set", help="JSON policy to store.")] = None,
    config: ConfigOpt = None,
    database_url: UrlOpt = None,
) -> None:
    """Show (or ``--set``) an organisation's escalation policy."""
    with _conn(config, database_url) as conn:
        if set_file is not None:
            try:
                parsed = EscalationPolicy.parse(json.loads(set_file.read_text(encoding="utf-8")))
            except (OSError, ValueError) as exc:
                typer.echo(f"error: {exc}", err=True)
                raise typer.Exit(2) from exc
            with conn.transaction():
                version = alert_store.put_policy(conn, org, parsed.model_dump(mode="json"))
            typer.echo(f"stored escalation policy v{version} for {org}", err=True)
        stored = alert_store.get_policy(conn, org)
    doc = stored[1] if stored else DEFAULT_POLICY.model_dump(mode="json")
    typer.echo(json.dumps({"org": org, "version": stored[0] if stored else None, "policy": doc}, indent=1))

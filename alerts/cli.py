"""``vigil alerts``: the alert engine (the default command), replay, and clinician actions.

Settings are built once per command (``AlertsSettings``: environment ``VIGIL_*`` over the TOML
file) and passed down. ``replay`` needs no database. The engine and the replay (pandas,
scikit-learn) are imported by their commands only, so that ``vigil --help`` and the other groups
do not pay for them.

The engine needs an escalation sink, which ``consult`` implements and alerts never imports: the
group is built by :func:`build_app` with a sink factory, which the composition root passes
(``vigil_cli.alerts``, mounted as ``vigil alerts``). Every other command is in :data:`commands`.
"""

from __future__ import annotations

import json
import logging
import re
import signal
import sys
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import FrameType
from typing import Annotated, Any

import typer

from alerts import monitoring, service
from alerts.config import RulesConfig
from alerts.errors import AlertsConfigError, LifecycleError, MonitoringRequestError, ReplayInputError
from alerts.escalation import DEFAULT_POLICY, EscalationPolicy, EscalationSink
from alerts.replay_csv import parse_readings
from alerts.settings import AlertsSettings
from rpm_core.clock import SystemClock
from rpm_core.errors import VigilError
from rpm_core.settings import load_settings
from store import alerts as alert_store
from store import monitoring_pauses, patient_baselines
from store.connection import Connection, connect
from store.errors import DatabaseUnavailable, MigrationError

__all__ = ["SinkFactory", "build_app", "commands"]

log = logging.getLogger(__name__)

# Builds the engine's escalation sink (``consult``'s implementations; wired by ``vigil_cli.alerts``).
SinkFactory = Callable[[], EscalationSink]

# Every command but the engine: replay and the clinicians' and operators' actions. Without the engine
# they need no sink; :func:`build_app` adds them to the ``vigil alerts`` group.
commands = typer.Typer(add_completion=False, help="Replay and alert, monitoring and policy actions.")

ConfigOpt = Annotated[Path | None, typer.Option("--config", help="TOML settings file (or VIGIL_CONFIG).")]
UrlOpt = Annotated[str | None, typer.Option("--database-url", help="PostgreSQL URL (or VIGIL_DATABASE_URL).")]
ByOpt = Annotated[str, typer.Option("--by", help="Who does it (user id).")]


def _settings(config: Path | None, **overrides: Any) -> AlertsSettings:
    try:
        return load_settings(AlertsSettings, config_file=config, **overrides)
    except VigilError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc


def build_app(sink_factory: SinkFactory) -> typer.Typer:
    """The ``vigil alerts`` group: the engine (``run``, also the default) handing each due escalation
    step to ``sink_factory()``, and every other command of :data:`commands`.

    The composition root (``vigil_cli.alerts``) passes the sink factory: alerts never imports the
    sinks, which live in ``consult``. The factory is called only when the engine starts.
    """
    app = typer.Typer(add_completion=False, invoke_without_command=True, help="The alert engine and replay.")

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
        _run_engine(settings, sink_factory)

    app.add_typer(commands)  # no name: its commands join the group
    return app


def _run_engine(settings: AlertsSettings, sink_factory: SinkFactory) -> None:
    logging.getLogger("alerts").setLevel(logging.INFO)
    stop = threading.Event()

    def _stop(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    from alerts.engine import Engine  # heavy (pandas, scikit-learn): only this command needs it

    engine = Engine(settings, clock=SystemClock(), sink=sink_factory(), stop=stop)
    log.info("alert engine starting (%d partitions)", settings.alerts_partitions)
    try:
        engine.run()
    except MigrationError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc
    log.info("alert engine stopped: %s", engine.stats)


@commands.command("replay")
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


def _print_alert(row: alert_store.AlertRow, suggestion: alert_store.AlertEventRow | None = None) -> None:
    doc: dict[str, Any] = {
        "alert_id": row.alert_id,
        "patient_id": row.patient_id,
        "rule": row.rule,
        "kind": row.kind,
        "metric": row.metric,
        "severity": row.severity,
        "state": row.state,
        "unconfirmed": row.unconfirmed,
        "assignee": row.assignee,
        "opened_at": row.opened_at.isoformat(),
        "snoozed_until": row.snoozed_until.isoformat() if row.snoozed_until else None,
        "summary": row.summary,
    }
    if suggestion is not None:
        doc["baseline_suggested"] = {"at": suggestion.at.isoformat(), **suggestion.data}
    typer.echo(json.dumps(doc))


def _act(config: Path | None, database_url: str | None, fn: Any, alert_id: int, **kw: Any) -> None:
    with _conn(config, database_url) as conn:
        try:
            row = fn(conn, alert_id, now=SystemClock().now(), **kw)
        except LifecycleError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(1) from exc
    _print_alert(row)


@commands.command("ack")
def ack(
    alert_id: int,
    by: ByOpt,
    note: Annotated[str | None, typer.Option()] = None,
    config: ConfigOpt = None,
    database_url: UrlOpt = None,
) -> None:
    """Acknowledge an open alert (stops its escalation)."""
    _act(config, database_url, service.acknowledge, alert_id, by=by, note=note)


@commands.command("resolve")
def resolve(
    alert_id: int,
    by: ByOpt,
    note: Annotated[str, typer.Option(help="Why it is resolved (required).")],
    config: ConfigOpt = None,
    database_url: UrlOpt = None,
) -> None:
    """Resolve an alert with a note."""
    _act(config, database_url, service.resolve, alert_id, by=by, note=note)


@commands.command("assign")
def assign(
    alert_id: int,
    by: ByOpt,
    to: Annotated[str | None, typer.Option("--to", help="Assignee (omit: unassign).")] = None,
    config: ConfigOpt = None,
    database_url: UrlOpt = None,
) -> None:
    """Assign an alert to a clinician."""
    _act(config, database_url, service.assign, alert_id, by=by, assignee=to)


@commands.command("snooze")
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


@commands.command("list")
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
        suggested = alert_store.events_of_type(conn, [r.alert_id for r in rows], "baseline_suggested")
    for row in rows:
        _print_alert(row, suggested.get(row.alert_id))


@commands.command("events")
def events_cmd(alert_id: int, config: ConfigOpt = None, database_url: UrlOpt = None) -> None:
    """An alert's history (opened, confirmed, escalation, baseline_suggested, ...) as JSON lines."""
    with _conn(config, database_url) as conn:
        rows = alert_store.alert_events(conn, alert_id)
    for e in rows:
        doc = {"event_id": e.event_id, "at": e.at.isoformat(), "type": e.type, "actor": e.actor, "note": e.note}
        typer.echo(json.dumps({**doc, "data": e.data}))


# -- monitoring: pauses and accepted baselines ------------------------------------------------------

_RELATIVE = re.compile(r"\+?(?P<n>\d{1,4})(?P<unit>[hd])")


def _when(text: str, now: datetime, what: str) -> datetime:
    """ISO 8601 (no offset: UTC) or a time from now: ``+12h``, ``7d``."""
    m = _RELATIVE.fullmatch(text.strip())
    if m is not None:
        return now + timedelta(**{"hours" if m["unit"] == "h" else "days": int(m["n"])})
    try:
        parsed = datetime.fromisoformat(text.strip())
        return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)
    except (ValueError, OverflowError):
        typer.echo(f"error: {what}: not an ISO 8601 time or +<n>h / +<n>d", err=True)
        raise typer.Exit(2) from None


def _refused(exc: MonitoringRequestError) -> typer.Exit:
    typer.echo(f"error: {exc.why}", err=True)
    return typer.Exit(1)


def _pause_json(p: monitoring_pauses.PauseRow) -> str:
    return json.dumps(
        {
            "pause_id": p.pause_id,
            "patient_id": p.patient_id,
            "starts_at": p.starts_at.isoformat(),
            "ends_at": p.ends_at.isoformat(),
            "planned_ends_at": p.planned_ends_at.isoformat(),
            "reason": p.reason,
            "created_by": p.created_by,
            "resumed_by": p.resumed_by,
            "resumed_at": p.resumed_at.isoformat() if p.resumed_at else None,
        }
    )


@commands.command("pause")
def pause(
    patient: str,
    by: ByOpt,
    until: Annotated[str, typer.Option(help="End: ISO 8601 time (UTC without offset) or +<n>h / +<n>d.")],
    reason: Annotated[str, typer.Option(help="Why (hospital admission, travel); required.")],
    start: Annotated[str | None, typer.Option("--from", help="Start (default: now).")] = None,
    config: ConfigOpt = None,
    database_url: UrlOpt = None,
) -> None:
    """Pause a patient's monitoring: no missing-data alert until the end (readings are still judged)."""
    now = SystemClock().now()
    end = _when(until, now, "--until")
    begin = None if start is None else _when(start, now, "--from")
    with _conn(config, database_url) as conn:
        try:
            row = monitoring.pause_monitoring(conn, patient, until=end, reason=reason, by=by, now=now, starts_at=begin)
        except MonitoringRequestError as exc:
            raise _refused(exc) from exc
    typer.echo(_pause_json(row))


@commands.command("resume")
def resume(patient: str, by: ByOpt, config: ConfigOpt = None, database_url: UrlOpt = None) -> None:
    """End a patient's monitoring pause now."""
    with _conn(config, database_url) as conn:
        try:
            rows = monitoring.resume_monitoring(conn, patient, by=by, now=SystemClock().now())
        except MonitoringRequestError as exc:
            raise _refused(exc) from exc
    for row in rows:
        typer.echo(_pause_json(row))


@commands.command("pauses")
def pauses(
    patient: str,
    org: Annotated[str, typer.Option(help="The patient's organisation.")],
    since: Annotated[str, typer.Option(help="From (ISO 8601 or +/-).")] = "1970-01-01T00:00:00",
    to: Annotated[str, typer.Option(help="To (ISO 8601).")] = "9999-12-31T00:00:00",
    config: ConfigOpt = None,
    database_url: UrlOpt = None,
) -> None:
    """A patient's monitoring pauses overlapping a time range (what charts show), as JSON lines."""
    now = SystemClock().now()
    start, end = _when(since, now, "--since"), _when(to, now, "--to")
    with _conn(config, database_url) as conn:
        rows = monitoring_pauses.pauses_between(conn, org, patient, start, end)
    for row in rows:
        typer.echo(_pause_json(row))


baseline_app = typer.Typer(add_completion=False, help="Baselines accepted as a patient's own.")
commands.add_typer(baseline_app, name="baseline")


def _baseline_json(b: patient_baselines.BaselineRow) -> str:
    return json.dumps(
        {
            "baseline_id": b.baseline_id,
            "patient_id": b.patient_id,
            "rule": b.rule,
            "value": b.value,
            "reason": b.reason,
            "accepted_by": b.accepted_by,
            "accepted_at": b.accepted_at.isoformat(),
            "alert_id": b.alert_id,
            "revoked_by": b.revoked_by,
            "revoked_at": b.revoked_at.isoformat() if b.revoked_at else None,
        }
    )


@baseline_app.command("accept")
def baseline_accept(
    patient: str,
    rule: Annotated[str, typer.Argument(help="threshold:<metric>:<low|high>")],
    by: ByOpt,
    reason: Annotated[str, typer.Option(help="Why this is the patient's own normal; required.")],
    value: Annotated[
        float | None, typer.Option(help="The patient's usual value (default: from their readings).")
    ] = None,
    config: ConfigOpt = None,
    database_url: UrlOpt = None,
) -> None:
    """Accept a patient's baseline beyond a population line as their own (resolves the rule's alert)."""
    rules = _settings(config).alerts_rules
    with _conn(config, database_url) as conn:
        try:
            row = monitoring.accept_baseline(
                conn, patient, rule, by=by, reason=reason, now=SystemClock().now(), rules=rules, value=value
            )
        except MonitoringRequestError as exc:
            raise _refused(exc) from exc
    typer.echo(_baseline_json(row))


@baseline_app.command("revoke")
def baseline_revoke(
    patient: str,
    rule: str,
    by: ByOpt,
    reason: Annotated[str, typer.Option(help="Why; required.")],
    config: ConfigOpt = None,
    database_url: UrlOpt = None,
) -> None:
    """Take an accepted baseline back: the population bands apply again."""
    with _conn(config, database_url) as conn:
        try:
            row = monitoring.revoke_baseline(conn, patient, rule, by=by, reason=reason, now=SystemClock().now())
        except MonitoringRequestError as exc:
            raise _refused(exc) from exc
    typer.echo(_baseline_json(row))


@baseline_app.command("list")
def baseline_list(
    patient: str,
    org: Annotated[str, typer.Option(help="The patient's organisation.")],
    config: ConfigOpt = None,
    database_url: UrlOpt = None,
) -> None:
    """Every baseline of a patient, in force and revoked, as JSON lines."""
    with _conn(config, database_url) as conn:
        rows = patient_baselines.baseline_history(conn, org, patient)
    for row in rows:
        typer.echo(_baseline_json(row))


@commands.command("policy")
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

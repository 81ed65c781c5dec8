"""``vigil notify``: the delivery worker (``run``) and what it has done (``status``, ``list``).

Settings are built once per command (``NotifySettings``: flags over ``VIGIL_*`` over the TOML
file). ``run`` builds the channels that are configured (email with ``notify_smtp_host``, SMS and
push with their webhook URLs; in-app always); notifications of a channel no worker has wait in
the outbox. Several workers may run at once: none sends a notification another one holds.
"""

from __future__ import annotations

import json
import logging
import signal
import threading
from pathlib import Path
from types import FrameType
from typing import Annotated, Any

import typer

from consult.notify.channels import Channel, InAppChannel
from consult.notify.links import AckLinkSigner
from consult.notify.settings import NotifySettings, api_secret
from consult.notify.smtp import SmtpChannel, SmtpOptions
from consult.notify.webhook import WebhookChannel, WebhookOptions
from consult.notify.worker import Worker, WorkerOptions
from rpm_core.backoff import BackoffPolicy
from rpm_core.clock import SystemClock
from rpm_core.errors import VigilError
from rpm_core.settings import load_settings
from store import notification_outbox as outbox
from store.connection import connect
from store.errors import DatabaseUnavailable, MigrationError

__all__ = ["app", "build_channels", "worker_options"]

log = logging.getLogger(__name__)

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Notification delivery.")

ConfigOpt = Annotated[Path | None, typer.Option("--config", help="TOML settings file (or VIGIL_CONFIG).")]
UrlOpt = Annotated[str | None, typer.Option("--database-url", help="PostgreSQL URL (or VIGIL_DATABASE_URL).")]


def _settings(config: Path | None, **overrides: Any) -> NotifySettings:
    try:
        return load_settings(NotifySettings, config_file=config, **overrides)
    except VigilError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc


def build_channels(s: NotifySettings) -> dict[str, Channel]:
    """The channels ``s`` configures (in-app always)."""
    channels: dict[str, Channel] = {"in_app": InAppChannel()}
    if s.notify_smtp_host:
        channels["email"] = SmtpChannel(
            SmtpOptions(
                host=s.notify_smtp_host,
                port=s.notify_smtp_port,
                security=s.notify_smtp_security,
                username=s.notify_smtp_username or None,
                password=s.notify_smtp_password.get_secret_value() if s.notify_smtp_password else None,
                sender=s.notify_smtp_from,
                ca_file=s.notify_smtp_ca_file,
                timeout_s=s.notify_smtp_timeout_s,
            )
        )
    for name, url, secret in (
        ("sms", s.notify_sms_webhook_url, s.notify_sms_webhook_secret),
        ("push", s.notify_push_webhook_url, s.notify_push_webhook_secret),
    ):
        if url:
            if secret is None:
                raise VigilError(f"notify_{name}_webhook_secret is not set")
            channels[name] = WebhookChannel(
                WebhookOptions(
                    channel=name,
                    url=url,
                    secret=secret.get_secret_value().encode("utf-8"),
                    timeout_s=s.notify_webhook_timeout_s,
                )
            )
    return channels


def worker_options(s: NotifySettings) -> WorkerOptions:
    return WorkerOptions(
        public_url=s.api_public_url,
        batch=s.notify_batch,
        poll_interval_s=s.notify_poll_interval_s,
        max_attempts=s.notify_max_attempts,
        backoff=BackoffPolicy(
            base_s=s.notify_backoff_base_s,
            factor=s.notify_backoff_factor,
            cap_s=max(s.notify_backoff_cap_s, s.notify_backoff_base_s),
        ),
        jitter=s.notify_backoff_jitter,
        lease_s=s.notify_lease_s,
        unknown_outcome=s.notify_unknown_outcome,
        ack_ttl_s=s.notify_ack_link_ttl_s,
        text_channels=tuple(s.notify_text_channels),
    )


@app.command("run")
def run(config: ConfigOpt = None, database_url: UrlOpt = None) -> None:
    """Deliver notifications until SIGTERM/SIGINT; start several to share the work."""
    s = _settings(config, database_url=database_url)
    logging.getLogger("consult").setLevel(logging.INFO)
    try:
        channels = build_channels(s)
        signer = AckLinkSigner.from_secret(api_secret(s))
    except (VigilError, ValueError, OSError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    stop = threading.Event()

    def _stop(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    worker = Worker(s.database_url, worker_options(s), channels, signer, clock=SystemClock(), stop=stop)
    log.info("notify worker starting (channels: %s)", ",".join(sorted(channels)))
    try:
        worker.run()
    except MigrationError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc
    log.info("notify worker stopped: %s", worker.stats)


@app.command("status")
def status(config: ConfigOpt = None, database_url: UrlOpt = None) -> None:
    """Notifications per channel and state, as JSON."""
    s = _settings(config, database_url=database_url)
    try:
        with connect(s.database_url, application_name="vigil-notify-cli") as conn:
            counts = outbox.state_counts(conn)
    except (DatabaseUnavailable, MigrationError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc
    doc: dict[str, dict[str, int]] = {}
    for (channel, state), n in sorted(counts.items()):
        doc.setdefault(channel, {})[state] = n
    typer.echo(json.dumps(doc, sort_keys=True))


@app.command("list")
def list_(
    config: ConfigOpt = None,
    database_url: UrlOpt = None,
    state: Annotated[str | None, typer.Option(help="Only this state (e.g. failed).")] = None,
    limit: Annotated[int, typer.Option(min=1, max=10_000)] = 50,
) -> None:
    """The newest notifications (ids, kinds, states, error codes; never contents), one JSON per line."""
    s = _settings(config, database_url=database_url)
    try:
        with connect(s.database_url, application_name="vigil-notify-cli") as conn:
            rows = outbox.list_notifications(conn, state=state, limit=limit)
    except (DatabaseUnavailable, MigrationError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc
    for r in rows:
        typer.echo(
            json.dumps(
                {
                    "outbox_id": r.outbox_id,
                    "channel": r.channel,
                    "kind": r.kind,
                    "recipient_user_id": r.recipient_user_id,
                    "alert_id": r.alert_id,
                    "state": r.state,
                    "attempts": r.attempts,
                    "last_error": r.last_error,
                    "next_attempt_at": r.next_attempt_at.isoformat(),
                    "sent_at": r.sent_at.isoformat() if r.sent_at else None,
                }
            )
        )

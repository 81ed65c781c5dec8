"""``vigil ingest``: run the ingestion service until SIGTERM/SIGINT (then drain and exit).

Exit status: 0 after a graceful stop, 2 for unusable settings or keys, 3 when ingest refuses to
start (``synchronous_commit`` off), 1 when the database cannot be reached at start-up.
"""

from __future__ import annotations

import logging
import signal
import threading
from pathlib import Path
from types import FrameType
from typing import Annotated

import typer
from prometheus_client import start_http_server

from ingest.errors import RefusedToStart
from ingest.service import IngestService
from ingest.settings import IngestSettings
from rpm_core.errors import VigilError
from rpm_core.keystore import load_server_keys
from rpm_core.settings import load_settings
from store.errors import StoreError

__all__ = ["app", "build_service"]

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False, invoke_without_command=True)

log = logging.getLogger(__name__)


def build_service(settings: IngestSettings) -> IngestService:
    """The service with its keys and broker password read from disk (raises ``VigilError``)."""
    keyring = load_server_keys(settings.key_dir)
    try:
        password = settings.password_file().read_text().strip()
    except OSError as exc:
        raise RefusedToStart(f"cannot read the MQTT password file {settings.password_file()}") from exc
    if settings.mqtt_ca_file is not None and not settings.mqtt_ca_file.is_file():
        raise RefusedToStart(f"mqtt_ca_file {settings.mqtt_ca_file} does not exist (the broker's CA certificate)")
    return IngestService(settings, keyring=keyring, mqtt_password=password)


@app.callback()
def ingest(
    config: Annotated[Path | None, typer.Option("--config", help="TOML settings file (or VIGIL_CONFIG).")] = None,
    database_url: Annotated[str | None, typer.Option("--database-url")] = None,
    client_id: Annotated[str | None, typer.Option("--client-id", help="Unique per worker.")] = None,
    metrics_port: Annotated[int | None, typer.Option("--metrics-port", help="0 disables.")] = None,
    log_level: Annotated[str, typer.Option("--log-level")] = "INFO",
) -> None:
    """Consume agents' envelopes from the broker and store them (ack after COMMIT)."""
    logging.getLogger().setLevel(log_level.upper())
    try:
        settings = load_settings(
            IngestSettings,
            config_file=config,
            database_url=database_url,
            mqtt_client_id=client_id,
            metrics_port=metrics_port,
        )
        service = build_service(settings)
    except RefusedToStart as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(3) from exc
    except VigilError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    run(service, settings)


def run(service: IngestService, settings: IngestSettings) -> None:
    stop = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        log.info("signal %d: draining", signum)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    if settings.metrics_port:
        try:
            start_http_server(settings.metrics_port, addr=settings.metrics_bind, registry=service.metrics.registry)
        except OSError as exc:  # e.g. a second worker on the same host with the same port
            typer.echo(
                f"error: cannot serve metrics on {settings.metrics_bind}:{settings.metrics_port}: {exc}", err=True
            )
            raise typer.Exit(2) from exc
    try:
        service.start()
    except RefusedToStart as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(3) from exc
    except StoreError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc
    while not stop.wait(0.5):
        if service.failure is not None:
            break
    service.stop()
    if isinstance(service.failure, RefusedToStart):
        typer.echo(f"error: {service.failure}", err=True)
        raise typer.Exit(3)
    if service.failure is not None:
        raise typer.Exit(1)

"""``vigil broker render | sync``: the complete Mosquitto configuration, and its accounts, from the database."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import psycopg
import typer

from broker_config.errors import BrokerConfigError
from broker_config.render import BrokerLayout, render_broker, running_pid
from rpm_core.errors import VigilError
from vigil_cli.provisioning import (
    broker_spec,
    ca_of,
    load,
    now,
    open_db,
    sync_broker,
)

__all__ = ["app"]

app = typer.Typer(no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)

ConfigOpt = Annotated[Path | None, typer.Option("--config", help="TOML settings file (or VIGIL_CONFIG).")]


@app.callback()
def _broker() -> None:
    """Render the MQTT broker configuration."""


def _fail(exc: Exception) -> typer.Exit:
    typer.echo(f"error: {exc}", err=True)
    return typer.Exit(1)


@app.command("render")
def render_cmd(
    out: Annotated[Path | None, typer.Option("--out", help="Directory to write (default: broker_dir).")] = None,
    config: ConfigOpt = None,
    without_agents: Annotated[
        bool, typer.Option("--without-agents", help="Do not read agents from the database (first install).")
    ] = False,
) -> None:
    """Write mosquitto.conf, TLS files and the broker's accounts; start it with `mosquitto -c DIR/mosquitto.conf`.

    Rendered as root, the tree is made usable by broker_user (Mosquitto drops to it at start). While
    a Mosquitto runs from DIR its accounts are brought in line through its control API instead (the
    configuration and certificate take effect at its next start).
    """
    settings = load(config, broker_dir=out)
    layout = BrokerLayout(settings.broker_dir)
    try:
        running = running_pid(layout)
        if running is not None and without_agents:
            raise BrokerConfigError(
                f"Mosquitto (pid {running}) runs from {layout.out_dir}: --without-agents would remove every agent"
            )
        conf = render_broker(
            layout,
            spec=broker_spec(settings, layout),
            ca=ca_of(settings),
            server_names=settings.broker_server_names,
            accounts=None,
            now=now(),
        )
        if without_agents:
            note = sync_broker(settings, None)
        else:
            with open_db(settings) as conn:
                note = sync_broker(settings, conn)
    except (VigilError, OSError, psycopg.Error) as exc:
        raise _fail(exc) from exc
    typer.echo(f"wrote {conf}; {note}")
    if running is not None:
        typer.echo(f"Mosquitto (pid {running}) keeps its configuration and certificate until restarted", err=True)


@app.command("sync")
def sync_cmd(config: ConfigOpt = None) -> None:
    """Bring the broker's accounts in line with the database (after a failed provisioning step)."""
    settings = load(config)
    try:
        with open_db(settings) as conn:
            note = sync_broker(settings, conn)
    except (VigilError, OSError, psycopg.Error) as exc:
        raise _fail(exc) from exc
    typer.echo(note)

"""``vigil broker render | sync``: the complete Mosquitto configuration, and its accounts, from the database.

The work is :mod:`provisioning.broker`'s; these commands build its settings, call it and print.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from provisioning.broker import render, sync_broker
from provisioning.errors import ProvisioningError
from vigil_cli.provisioning import CLOCK, ConfigOpt, fail, load

__all__ = ["app"]

app = typer.Typer(no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)


@app.callback()
def _broker() -> None:
    """Render the MQTT broker configuration."""


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
    try:
        rendered = render(settings, now=CLOCK.now(), with_agents=not without_agents)
    except ProvisioningError as exc:
        raise fail(exc) from exc
    typer.echo(f"wrote {rendered.conf}; {rendered.note}")
    if rendered.running_pid is not None:
        typer.echo(
            f"Mosquitto (pid {rendered.running_pid}) keeps its configuration and certificate until restarted", err=True
        )


@app.command("sync")
def sync_cmd(config: ConfigOpt = None) -> None:
    """Bring the broker's accounts in line with the database (after a failed provisioning step)."""
    settings = load(config)
    try:
        note = sync_broker(settings)
    except ProvisioningError as exc:
        raise fail(exc) from exc
    typer.echo(note)

"""``vigil broker render --out DIR``: the complete Mosquitto configuration from settings and the database."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from broker_config.errors import BrokerConfigError
from broker_config.mosquitto import MosquittoSpec
from broker_config.render import BrokerLayout, render_broker
from vigil_cli.provisioning import agent_accounts, ca_of, load, now, open_db, service_accounts

__all__ = ["app"]

app = typer.Typer(no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)

ConfigOpt = Annotated[Path | None, typer.Option("--config", help="TOML settings file (or VIGIL_CONFIG).")]


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
    """Write mosquitto.conf, TLS files, passwd and acl; start Mosquitto with `mosquitto -c DIR/mosquitto.conf`."""
    settings = load(config, broker_dir=out)
    layout = BrokerLayout(settings.broker_dir)
    spec = MosquittoSpec(
        data_dir=layout.data_dir,
        port=settings.broker_port,
        bind_address=settings.broker_bind,
        password_file=layout.passwd,
        max_inflight_messages=settings.broker_max_inflight,
        max_packet_size=settings.broker_max_packet,
        user=settings.broker_user,
    )
    agents = []
    if not without_agents:
        with open_db(settings) as conn:
            agents = agent_accounts(conn)
    try:
        conf = render_broker(
            layout,
            spec=spec,
            ca=ca_of(settings),
            server_names=settings.broker_server_names,
            agents=agents,
            services=service_accounts(settings.key_dir),
            now=now(),
        )
    except (BrokerConfigError, OSError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc
    typer.echo(f"wrote {conf} ({len(agents)} agents)")

"""Settings and shared steps of ``vigil broker`` and ``vigil agents`` (they span store and broker_config).

The database is the source of truth for who may log in to the broker: after any change the
password and ACL files are rendered again from the ``agents`` table and Mosquitto is told to
reload (SIGHUP to the pid in the rendered directory).
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
import typer
from pydantic import Field

from broker_config.ca import CertifiedKey, load_or_create_ca
from broker_config.passwords import INGEST_USERNAME, AgentAccount, ServiceAccount, hash_password, new_password
from broker_config.render import BrokerLayout, reload_broker, write_access_files
from rpm_core.errors import VigilError
from rpm_core.ids import AgentId, OrgId
from rpm_core.keystore import write_private
from rpm_core.settings import VigilSettings, load_settings
from store.agents import broker_accounts
from store.config import DEFAULT_DATABASE_URL

__all__ = [
    "ProvisioningSettings",
    "ingest_password",
    "load",
    "now",
    "open_db",
    "service_accounts",
    "sync_broker_access",
]


class ProvisioningSettings(VigilSettings):
    # PostgreSQL URL of the Vigil database: its agents table is the source of truth for broker access.
    database_url: str = DEFAULT_DATABASE_URL
    # Server keys (envelope key generations), the CA and service passwords; mode 0700/0600.
    key_dir: Path = Path(".vigil/keys")
    # The rendered Mosquitto directory (`vigil broker render --out`).
    broker_dir: Path = Path(".vigil/broker")
    # What agents dial and the TLS name they check (goes into enrollment bundles).
    broker_host: str = "localhost"
    # The broker's TLS port: the rendered listener's port and the port written into enrollment bundles.
    broker_port: int = Field(default=8883, gt=0, lt=65536)
    # Address the rendered Mosquitto listener binds to; 0.0.0.0 (or a LAN address) to let remote agents in.
    broker_bind: str = "127.0.0.1"
    # Host names and IP addresses in the broker certificate (SAN), issued anew by every `vigil broker render`:
    # must include broker_host and the mqtt_host ingest uses, as both check the name.
    broker_server_names: tuple[str, ...] = ("localhost", "127.0.0.1")
    # Unix user Mosquitto drops to when started as root; rendering as root makes it owner of passwd, acl
    # and the server key so Mosquitto can read them.
    broker_user: str = "mosquitto"
    # Mosquitto max_inflight_messages: QoS 1 messages a client (an agent) may have unacknowledged towards
    # the broker, and the limit towards v3 clients; towards ingest the broker follows mqtt_receive_maximum.
    broker_max_inflight: int = Field(default=1000, ge=1, le=65535)
    # Mosquitto max_packet_size in bytes: a client sending a bigger packet is disconnected. Keep it above
    # the 256 KiB envelope limit (rpm_core.envelope.MAX_ENVELOPE_BYTES) plus the topic.
    broker_max_packet: int = Field(default=512 * 1024, ge=64 * 1024)
    # Hours an enrollment bundle and its one-time token stay valid: `vigil edge enroll` refuses an
    # expired bundle and ingest dead-letters a late registration (enrollment_expired).
    enrollment_ttl_hours: int = Field(default=168, ge=1, le=24 * 90)


def load(config: Path | None, **overrides: Any) -> ProvisioningSettings:
    try:
        return load_settings(ProvisioningSettings, config_file=config, **overrides)
    except VigilError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc


def now() -> datetime:
    return datetime.now(UTC)


def open_db(settings: ProvisioningSettings) -> psycopg.Connection[Any]:
    try:
        return psycopg.connect(settings.database_url)
    except psycopg.OperationalError as exc:
        typer.echo(f"error: cannot connect to the database: {exc.sqlstate or 'unreachable'}", err=True)
        raise typer.Exit(1) from exc


def ingest_password(key_dir: Path) -> str:
    """The broker password of the ingest service account, created on first use (mode 0600)."""
    path = key_dir / "mqtt" / f"{INGEST_USERNAME}.password"
    if not path.exists():
        write_private(path, new_password().encode())
    return path.read_text().strip()


def service_accounts(key_dir: Path) -> list[ServiceAccount]:
    return [ServiceAccount(INGEST_USERNAME, hash_password(ingest_password(key_dir)))]


def agent_accounts(conn: psycopg.Connection[Any]) -> list[AgentAccount]:
    return [AgentAccount(OrgId(r.org_id), AgentId(r.agent_id), r.password_hash) for r in broker_accounts(conn)]


def sync_broker_access(settings: ProvisioningSettings, conn: psycopg.Connection[Any]) -> str:
    """Rewrite passwd + acl from the database and reload the broker; a line for the operator."""
    layout = BrokerLayout(settings.broker_dir)
    if not layout.conf.exists():
        return f"no rendered broker in {layout.out_dir}: run `vigil broker render` before starting Mosquitto"
    write_access_files(layout, agent_accounts(conn), service_accounts(settings.key_dir), user=settings.broker_user)
    if reload_broker(layout.pid_file):
        return "broker access files rewritten; Mosquitto reloaded"
    return "broker access files rewritten (Mosquitto is not running)"


def ca_of(settings: ProvisioningSettings) -> CertifiedKey:
    return load_or_create_ca(settings.key_dir, now=now())

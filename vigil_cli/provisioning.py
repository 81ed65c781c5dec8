"""Settings and shared steps of ``vigil broker`` and ``vigil agents`` (they span store and broker_config).

The database is the source of truth for who may log in to the broker. Mosquitto's dynamic security
plugin holds the accounts; it reads its JSON file only when the broker starts and, while it runs,
takes changes only through its control API (then rewrites the file itself). So every change is
applied one of two ways, chosen by whether a Mosquitto runs from ``broker_dir`` (its pid file):

* stopped: the JSON file is rendered again from the database (hashes only), inside the
  transaction that makes the change, before its COMMIT (undone if the COMMIT fails);
* running: the change goes through the control API as ``vigil-admin`` before the COMMIT; a
  COMMIT that fails deletes an account just created (a revocation stays applied: the safe side).

Either way a failure to apply is an error (exit 1) and the database change is not committed.
``vigil broker sync`` reconciles a running broker with the database. One provisioning command at
a time: a lock file in ``{key_dir}/mqtt`` serialises them (the admin account has one client id).
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
import typer
from pydantic import Field

from broker_config.accounts import (
    ADMIN_USERNAME,
    BrokerAccount,
    admin_account,
    agent_account,
    ingest_account,
    ingest_usernames,
)
from broker_config.ca import CertifiedKey, load_or_create_ca
from broker_config.control import DynsecControl
from broker_config.dynsec import DEFAULT_ACL_ACCESS, plan_reconcile
from broker_config.errors import BrokerConfigError
from broker_config.mosquitto import MosquittoSpec
from broker_config.passwords import hash_password, new_password
from broker_config.render import BrokerLayout, dynsec_files, persisted_state, running_pid, write_dynsec
from rpm_core.errors import VigilError
from rpm_core.keystore import write_private
from rpm_core.settings import VigilSettings, load_settings
from store.agents import broker_accounts
from store.config import DEFAULT_DATABASE_URL

__all__ = [
    "BrokerOutOfSync",
    "ProvisioningSettings",
    "agent_accounts",
    "broker_spec",
    "ca_of",
    "commit_with_broker",
    "control",
    "desired_accounts",
    "load",
    "now",
    "open_db",
    "service_accounts",
    "service_password",
    "sync_broker",
]


class ProvisioningSettings(VigilSettings):
    # PostgreSQL URL of the Vigil database: its agents table is the source of truth for broker access.
    database_url: str = DEFAULT_DATABASE_URL
    # Server keys (envelope key generations), the CA and service passwords; mode 0700/0600.
    key_dir: Path = Path(".vigil/keys")
    # The rendered Mosquitto directory (`vigil broker render --out`).
    broker_dir: Path = Path(".vigil/broker")
    # What agents dial and the TLS name they check (goes into enrollment bundles). Provisioning
    # dials it too, to change the accounts of a running broker through its control API.
    broker_host: str = "localhost"
    # The broker's TLS port: the rendered listener's port and the port written into enrollment bundles.
    broker_port: int = Field(default=8883, gt=0, lt=65536)
    # Address the rendered Mosquitto listener binds to; 0.0.0.0 (or a LAN address) to let remote agents in.
    broker_bind: str = "127.0.0.1"
    # Host names and IP addresses in the broker certificate (SAN), issued anew by every `vigil broker render`:
    # must include broker_host and the mqtt_host ingest uses, as both check the name.
    broker_server_names: tuple[str, ...] = ("localhost", "127.0.0.1")
    # Unix user Mosquitto drops to when started as root. Rendering as root makes the tree usable by it:
    # data, run and dynsec directories owned by it, configuration and TLS key readable by its group,
    # and every parent directory of broker_dir must let it through (render refuses otherwise).
    broker_user: str = "mosquitto"
    # Mosquitto max_inflight_messages: QoS 1 messages a client (an agent) may have unacknowledged towards
    # the broker, and the limit towards v3 clients; towards ingest the broker follows mqtt_receive_maximum.
    broker_max_inflight: int = Field(default=1000, ge=1, le=65535)
    # Mosquitto max_packet_size in bytes: a client sending a bigger packet is disconnected. Keep it above
    # the 256 KiB envelope limit (rpm_core.envelope.MAX_ENVELOPE_BYTES) plus the topic.
    broker_max_packet: int = Field(default=512 * 1024, ge=64 * 1024)
    # Mosquitto autosave_interval: seconds between saves of queued messages and sessions to disk, i.e. what
    # a crash (kill -9, power loss) of the broker can lose. A clean stop always saves.
    broker_autosave_interval_s: int = Field(default=60, ge=1, le=3600)
    # Mosquitto's log file; None logs to stderr (the journal under systemd). Rendering as root creates it
    # owned by broker_user.
    broker_log_file: Path | None = None
    # Path of mosquitto_dynamic_security.so; None finds it where Debian and others install it.
    broker_dynsec_plugin: Path | None = None
    # Ingest worker accounts vigil-ingest-1 .. vigil-ingest-N, each bound to its own client id and with its
    # password in {key_dir}/mqtt/vigil-ingest-N.password: give each `vigil ingest` worker one of these
    # names as its client id (`vigil ingest --client-id vigil-ingest-2`).
    broker_ingest_workers: int = Field(default=4, ge=1, le=256)
    # Hours an enrollment bundle and its one-time token stay valid: `vigil edge enroll` refuses an
    # expired bundle and ingest dead-letters a late registration (enrollment_expired).
    enrollment_ttl_hours: int = Field(default=168, ge=1, le=24 * 90)


class BrokerOutOfSync(BrokerConfigError):
    """The broker could not be brought in line with the database (what to do is in the message)."""

    reason = "broker_out_of_sync"


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


def ca_of(settings: ProvisioningSettings) -> CertifiedKey:
    return load_or_create_ca(settings.key_dir, now=now())


# -- accounts -------------------------------------------------------------------------------------


def service_password(key_dir: Path, username: str) -> str:
    """A service account's broker password, created on first use ({key_dir}/mqtt/USERNAME.password, 0600)."""
    path = key_dir / "mqtt" / f"{username}.password"
    if not path.exists():
        write_private(path, new_password().encode())
    return path.read_text().strip()


def service_passwords(settings: ProvisioningSettings) -> dict[str, str]:
    names = [*ingest_usernames(settings.broker_ingest_workers), ADMIN_USERNAME]
    return {name: service_password(settings.key_dir, name) for name in names}


def service_accounts(settings: ProvisioningSettings) -> list[BrokerAccount]:
    passwords = service_passwords(settings)
    out = [ingest_account(u, hash_password(passwords[u])) for u in ingest_usernames(settings.broker_ingest_workers)]
    out.append(admin_account(hash_password(passwords[ADMIN_USERNAME])))
    return out


def agent_accounts(conn: psycopg.Connection[Any]) -> list[BrokerAccount]:
    """Every agent that may log in (the database's view, uncommitted changes of ``conn`` included)."""
    return [agent_account(r.org_id, r.agent_id, r.password_hash) for r in broker_accounts(conn)]


def desired_accounts(settings: ProvisioningSettings, conn: psycopg.Connection[Any] | None) -> list[BrokerAccount]:
    return service_accounts(settings) + (agent_accounts(conn) if conn is not None else [])


def broker_spec(settings: ProvisioningSettings, layout: BrokerLayout) -> MosquittoSpec:
    return MosquittoSpec(
        data_dir=layout.data_dir,
        port=settings.broker_port,
        bind_address=settings.broker_bind,
        allow_anonymous=False,
        max_inflight_messages=settings.broker_max_inflight,
        max_packet_size=settings.broker_max_packet,
        autosave_interval=settings.broker_autosave_interval_s,
        log_file=settings.broker_log_file,
        user=settings.broker_user,
        tls=layout.tls(),
        dynsec=dynsec_files(layout, settings.broker_dynsec_plugin),
    )


# -- applying changes -----------------------------------------------------------------------------


@contextmanager
def _lock(settings: ProvisioningSettings) -> Iterator[None]:
    path = settings.key_dir / "mqtt" / "broker.lock"
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def control(settings: ProvisioningSettings) -> DynsecControl:
    """A control connection to the running broker as ``vigil-admin`` (a context manager)."""
    layout = BrokerLayout(settings.broker_dir)
    return DynsecControl(
        host=settings.broker_host,
        port=settings.broker_port,
        ca_file=layout.ca,
        password=service_password(settings.key_dir, ADMIN_USERNAME),
    )


@dataclass(frozen=True, slots=True)
class _Change:
    create: tuple[BrokerAccount, str] | None = None  # account and its plaintext password
    delete: str | None = None  # username

    def expected_in_file(self, usernames: set[str]) -> bool:
        if self.create is not None and self.create[0].username not in usernames:
            return False
        return self.delete is None or self.delete not in usernames


def commit_with_broker(
    settings: ProvisioningSettings,
    conn: psycopg.Connection[Any],
    *,
    create: tuple[BrokerAccount, str] | None = None,
    delete: str | None = None,
) -> str:
    """Apply the change the open transaction of ``conn`` holds to the broker, then COMMIT it.

    Raises (a :class:`VigilError`, or psycopg's error of the COMMIT) with the transaction rolled
    back when the broker could not be changed; returns a line for the operator.
    """
    change = _Change(create, delete)
    layout = BrokerLayout(settings.broker_dir)
    with _lock(settings):
        if not layout.conf.exists():
            conn.commit()
            return f"no rendered broker in {layout.out_dir}: `vigil broker render` will include this change"
        pid = running_pid(layout)
        if pid is None:
            return _commit_stopped(settings, conn, layout)
        return _commit_running(settings, conn, layout, change, pid)


def _commit_stopped(settings: ProvisioningSettings, conn: psycopg.Connection[Any], layout: BrokerLayout) -> str:
    write_dynsec(layout, desired_accounts(settings, conn), user=settings.broker_user)
    try:
        conn.commit()
    except BaseException as exc:
        conn.rollback()
        try:
            write_dynsec(layout, desired_accounts(settings, conn), user=settings.broker_user)
        except Exception as again:  # noqa: BLE001 - reported with what to do
            raise BrokerOutOfSync(
                f"the database change was not committed ({type(exc).__name__}) and {layout.dynsec_file} could "
                f"not be rendered again ({type(again).__name__}): run `vigil broker sync` before starting Mosquitto"
            ) from exc
        raise
    return f"broker accounts rewritten in {layout.dynsec_file} (Mosquitto is not running)"


def _commit_running(
    settings: ProvisioningSettings, conn: psycopg.Connection[Any], layout: BrokerLayout, change: _Change, pid: int
) -> str:
    with control(settings) as ctl:
        if change.create is not None:
            ctl.create(*change.create)
        if change.delete is not None:
            ctl.delete(change.delete)
        saved = persisted_state(layout)
        if saved is not None and not change.expected_in_file(set(saved.clients)):
            if change.create is not None:
                ctl.delete(change.create[0].username)
                conn.rollback()
            else:
                conn.commit()  # the revocation holds in the running broker; the file must follow
            raise BrokerOutOfSync(
                f"Mosquitto (pid {pid}) applied the change but could not save {layout.dynsec_file} (see its "
                f"log): it would undo it at its next start. Make {layout.dynsec_dir} writable by "
                f"{settings.broker_user}, then run `vigil broker sync`"
            )
        try:
            conn.commit()
        except BaseException:
            conn.rollback()
            if change.create is not None:
                ctl.delete(change.create[0].username)
            raise
    return f"Mosquitto (pid {pid}) updated through its control API"


def sync_broker(settings: ProvisioningSettings, conn: psycopg.Connection[Any] | None) -> str:
    """Make the broker's accounts those of the database (and the service accounts); a line for the operator.

    Stopped: the JSON file is rewritten. Running: what differs is changed through the control API
    (the broker then saves its file; checked when readable). Agents the running broker lacks cannot
    be created there (no plaintext password): :class:`BrokerOutOfSync` says to restart it.
    """
    layout = BrokerLayout(settings.broker_dir)
    if not layout.conf.exists():
        raise BrokerOutOfSync(f"no rendered broker in {layout.out_dir}: run `vigil broker render` first")
    with _lock(settings):
        pid = running_pid(layout)
        desired = desired_accounts(settings, conn)
        if pid is None:
            write_dynsec(layout, desired, user=settings.broker_user)
            return f"broker accounts written to {layout.dynsec_file} ({len(desired)} accounts)"
        with control(settings) as ctl:
            plan = plan_reconcile(desired, ctl.state(), service_passwords(settings))
            # setDefaultACLAccess last, always: the broker saves its file after it even if nothing changed.
            ctl.run(
                [
                    *plan.commands,
                    {
                        "command": "setDefaultACLAccess",
                        "acls": [{"acltype": k, "allow": v} for k, v in DEFAULT_ACL_ACCESS.items()],
                    },
                ]
            )
        saved = persisted_state(layout)
        if saved is not None and set(saved.clients) != {a.username for a in desired} - set(plan.missing):
            raise BrokerOutOfSync(
                f"Mosquitto (pid {pid}) could not save {layout.dynsec_file}: make {layout.dynsec_dir} writable "
                f"by {settings.broker_user} and run `vigil broker sync` again"
            )
        if plan.missing:
            raise BrokerOutOfSync(
                f"the running broker lacks {len(plan.missing)} agent account(s) ({', '.join(plan.missing[:5])}) "
                "whose passwords only the database knows as hashes: stop Mosquitto, run `vigil broker render` "
                "(or `vigil broker sync`) and start it again"
            )
    done = [f"{len(plan.created)} created", f"{len(plan.removed)} removed", f"{len(plan.repaired)} repaired"]
    return f"Mosquitto (pid {pid}) in line with the database: {', '.join(done)}"

"""The broker's accounts kept in line with the database, and ``vigil broker render | sync``'s work.

The database is the source of truth for who may log in to the broker. Mosquitto's dynamic security
plugin holds the accounts; it reads its JSON file only when the broker starts and, while it runs,
takes changes only through its control API (then rewrites the file itself). So every change is
applied one of two ways, chosen by whether a Mosquitto runs from ``broker_dir`` (its pid file):

* stopped: the JSON file is rendered again from the database (hashes only), inside the
  transaction that makes the change, before its COMMIT (rendered again if the COMMIT fails);
* running: the change goes through the control API as ``vigil-admin`` before the COMMIT; a
  COMMIT that fails deletes an account just created (a revocation stays applied: the safe side).

Either way a failure to apply raises and the database change is not committed
(:func:`commit_with_broker`). :func:`sync_broker` reconciles a running broker with the database.
One provisioning change at a time: a lock file in ``{key_dir}/mqtt`` serialises them across
processes (the admin account has one client id).
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from broker_config.accounts import (
    ADMIN_USERNAME,
    BrokerAccount,
    admin_account,
    agent_account,
    ingest_account,
    ingest_usernames,
)
from broker_config.control import DynsecControl
from broker_config.dynsec import DEFAULT_ACL_ACCESS, plan_reconcile
from broker_config.mosquitto import MosquittoSpec
from broker_config.passwords import hash_password, new_password
from broker_config.render import BrokerLayout, dynsec_files, persisted_state, render_broker, running_pid, write_dynsec
from provisioning.errors import BrokerError, BrokerOutOfSync, translating
from provisioning.keys import ca_of
from provisioning.settings import ProvisioningSettings
from rpm_core.keystore import write_private
from store.agents import broker_accounts
from store.transaction import Transaction, transaction

__all__ = [
    "APPLICATION_NAME",
    "RenderedBroker",
    "agent_accounts",
    "broker_spec",
    "commit_with_broker",
    "control",
    "desired_accounts",
    "render",
    "service_accounts",
    "service_password",
    "sync_broker",
]

APPLICATION_NAME = "vigil-provisioning"  # PostgreSQL application_name of provisioning's connections


# -- accounts -------------------------------------------------------------------------------------


def service_password(key_dir: Path, username: str) -> str:
    """A service account's broker password, created on first use ({key_dir}/mqtt/USERNAME.password, 0600)."""
    path = key_dir / "mqtt" / f"{username}.password"
    with translating():
        if not path.exists():
            write_private(path, new_password().encode())
        return path.read_text().strip()


def _service_passwords(settings: ProvisioningSettings) -> dict[str, str]:
    names = [*ingest_usernames(settings.broker_ingest_workers), ADMIN_USERNAME]
    return {name: service_password(settings.key_dir, name) for name in names}


def service_accounts(settings: ProvisioningSettings) -> list[BrokerAccount]:
    """The ``vigil-ingest-N`` and ``vigil-admin`` accounts (their passwords created on first use)."""
    passwords = _service_passwords(settings)
    with translating():
        out = [ingest_account(u, hash_password(passwords[u])) for u in ingest_usernames(settings.broker_ingest_workers)]
        out.append(admin_account(hash_password(passwords[ADMIN_USERNAME])))
    return out


def agent_accounts(tx: Transaction) -> list[BrokerAccount]:
    """Every agent that may log in (the database's view, uncommitted changes of ``tx`` included)."""
    with translating():
        return [agent_account(r.org_id, r.agent_id, r.password_hash) for r in broker_accounts(tx.conn)]


def desired_accounts(settings: ProvisioningSettings, tx: Transaction | None) -> list[BrokerAccount]:
    """What the broker should hold: the service accounts, and the agents unless ``tx`` is None."""
    return service_accounts(settings) + (agent_accounts(tx) if tx is not None else [])


def broker_spec(settings: ProvisioningSettings, layout: BrokerLayout) -> MosquittoSpec:
    with translating():
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
            ingest_socket=layout.ingest_socket if settings.broker_ingest_socket else None,
        )


def control(settings: ProvisioningSettings) -> DynsecControl:
    """A control connection to the running broker as ``vigil-admin`` (a context manager; its errors are
    ``broker_config``'s, translated by the callers here)."""
    layout = BrokerLayout(settings.broker_dir)
    return DynsecControl(
        host=settings.broker_host,
        port=settings.broker_port,
        ca_file=layout.ca,
        password=service_password(settings.key_dir, ADMIN_USERNAME),
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
    tx: Transaction,
    *,
    create: tuple[BrokerAccount, str] | None = None,
    delete: str | None = None,
) -> str:
    """Apply the change the open transaction ``tx`` holds to the broker, then COMMIT it.

    Raises a :class:`~provisioning.errors.ProvisioningError` with the transaction rolled back when
    the broker could not be changed or the COMMIT failed; returns a line for the operator.
    """
    change = _Change(create, delete)
    layout = BrokerLayout(settings.broker_dir)
    with translating(), _lock(settings):
        if not layout.conf.exists():
            tx.commit()
            return f"no rendered broker in {layout.out_dir}: `vigil broker render` will include this change"
        pid = running_pid(layout)
        if pid is None:
            return _commit_stopped(settings, tx, layout)
        return _commit_running(settings, tx, layout, change, pid)


def _commit_stopped(settings: ProvisioningSettings, tx: Transaction, layout: BrokerLayout) -> str:
    write_dynsec(layout, desired_accounts(settings, tx), user=settings.broker_user)
    try:
        tx.commit()
    except BaseException as exc:
        tx.rollback()
        try:
            write_dynsec(layout, desired_accounts(settings, tx), user=settings.broker_user)
        except Exception as again:  # noqa: BLE001 - reported with what to do
            raise BrokerOutOfSync(
                f"the database change was not committed ({type(exc).__name__}) and {layout.dynsec_file} could "
                f"not be rendered again ({type(again).__name__}): run `vigil broker sync` before starting Mosquitto"
            ) from exc
        raise
    return f"broker accounts rewritten in {layout.dynsec_file} (Mosquitto is not running)"


def _commit_running(
    settings: ProvisioningSettings, tx: Transaction, layout: BrokerLayout, change: _Change, pid: int
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
                tx.rollback()
            else:
                tx.commit()  # the revocation holds in the running broker; the file must follow
            raise BrokerOutOfSync(
                f"Mosquitto (pid {pid}) applied the change but could not save {layout.dynsec_file} (see its "
                f"log): it would undo it at its next start. Make {layout.dynsec_dir} writable by "
                f"{settings.broker_user}, then run `vigil broker sync`"
            )
        try:
            tx.commit()
        except BaseException:
            tx.rollback()
            if change.create is not None:
                ctl.delete(change.create[0].username)
            raise
    return f"Mosquitto (pid {pid}) updated through its control API"


def sync_broker(settings: ProvisioningSettings, *, with_agents: bool = True) -> str:
    """Make the broker's accounts those of the database (and the service accounts); a line for the operator.

    Stopped: the JSON file is rewritten. Running: what differs is changed through the control API
    (the broker then saves its file; checked when readable). Agents the running broker lacks cannot
    be created there (no plaintext password): :class:`BrokerOutOfSync` says to restart it.
    ``with_agents=False`` (a first install, before the database exists) writes the service accounts only.
    """
    layout = BrokerLayout(settings.broker_dir)
    if not layout.conf.exists():
        raise BrokerOutOfSync(f"no rendered broker in {layout.out_dir}: run `vigil broker render` first")
    with translating():
        if not with_agents:
            return _sync(settings, layout, None)
        with transaction(settings.database_url, application_name=APPLICATION_NAME) as tx:
            return _sync(settings, layout, tx)  # read only: rolled back


def _sync(settings: ProvisioningSettings, layout: BrokerLayout, tx: Transaction | None) -> str:
    with _lock(settings):
        pid = running_pid(layout)
        desired = desired_accounts(settings, tx)
        if pid is None:
            write_dynsec(layout, desired, user=settings.broker_user)
            return f"broker accounts written to {layout.dynsec_file} ({len(desired)} accounts)"
        with control(settings) as ctl:
            plan = plan_reconcile(desired, ctl.state(), _service_passwords(settings))
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


@dataclass(frozen=True, slots=True)
class RenderedBroker:
    conf: Path  # the mosquitto.conf written
    note: str  # how the accounts were brought in line (a line for the operator)
    running_pid: int | None  # a Mosquitto running from the tree keeps its configuration until restarted


def render(settings: ProvisioningSettings, *, now: datetime, with_agents: bool = True) -> RenderedBroker:
    """``vigil broker render``: the configuration, TLS files and accounts in ``broker_dir``.

    Rendered as root, the tree is made usable by ``broker_user``. While a Mosquitto runs from it,
    its accounts are brought in line through its control API instead (the configuration and
    certificate take effect at its next start), and ``with_agents=False`` is refused (it would
    remove every agent).
    """
    layout = BrokerLayout(settings.broker_dir)
    with translating():
        running = running_pid(layout)
        if running is not None and not with_agents:
            raise BrokerError(
                f"Mosquitto (pid {running}) runs from {layout.out_dir}: --without-agents would remove every agent"
            )
        conf = render_broker(
            layout,
            spec=broker_spec(settings, layout),
            ca=ca_of(settings, now=now),
            server_names=settings.broker_server_names,
            accounts=None,
            now=now,
        )
    return RenderedBroker(conf, sync_broker(settings, with_agents=with_agents), running)

"""The rendered broker directory: configuration, TLS files, password file, ACL, data and pid file.

``vigil broker render --out DIR`` writes::

    DIR/mosquitto.conf   the configuration (templates/mosquitto.conf.tmpl)
    DIR/ca.pem           the Vigil CA certificate (clients verify the broker with it)
    DIR/server.pem/.key  the broker's TLS certificate (SAN = the names agents dial) and key (0600)
    DIR/passwd           Mosquitto $7$ hashes: the ingest account and every non-revoked agent (0600)
    DIR/acl              per-agent topic grants (0644)
    DIR/data/            persistence
    DIR/mosquitto.pid    written by Mosquitto; SIGHUP to it reloads passwd and acl

Access files are replaced atomically (write, fsync, rename) so a reload never reads half a file.
"""

from __future__ import annotations

import errno
import os
import pwd
import signal
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from broker_config.ca import CertifiedKey, issue_server_certificate
from broker_config.errors import ReloadFailed
from broker_config.mosquitto import MosquittoSpec, TlsFiles, write_mosquitto
from broker_config.passwords import AgentAccount, ServiceAccount, render_acl, render_password_file
from rpm_core.keystore import write_private

__all__ = ["BrokerLayout", "full_spec", "reload_broker", "render_broker", "write_access_files"]


@dataclass(frozen=True, slots=True)
class BrokerLayout:
    out_dir: Path

    @property
    def conf(self) -> Path:
        return self.out_dir / "mosquitto.conf"

    @property
    def ca(self) -> Path:
        return self.out_dir / "ca.pem"

    @property
    def server_cert(self) -> Path:
        return self.out_dir / "server.pem"

    @property
    def server_key(self) -> Path:
        return self.out_dir / "server.key"

    @property
    def passwd(self) -> Path:
        return self.out_dir / "passwd"

    @property
    def acl(self) -> Path:
        return self.out_dir / "acl"

    @property
    def data_dir(self) -> Path:
        return self.out_dir / "data"

    @property
    def pid_file(self) -> Path:
        return self.out_dir / "mosquitto.pid"

    def tls(self) -> TlsFiles:
        return TlsFiles(cafile=self.ca, certfile=self.server_cert, keyfile=self.server_key)


def write_access_files(
    layout: BrokerLayout, agents: Iterable[AgentAccount], services: Sequence[ServiceAccount], *, user: str | None = None
) -> None:
    """Replace passwd and acl (then :func:`reload_broker`); ``user`` is who Mosquitto runs as."""
    accounts = list(agents)
    write_private(layout.passwd, render_password_file(accounts, services).encode())
    write_private(layout.acl, render_acl(accounts).encode())
    layout.acl.chmod(0o644)
    if user is not None:
        _give_to(user, layout.passwd)


def render_broker(
    layout: BrokerLayout,
    *,
    spec: MosquittoSpec,
    ca: CertifiedKey,
    server_names: Sequence[str],
    agents: Iterable[AgentAccount],
    services: Sequence[ServiceAccount],
    now: datetime,
    server_cert: CertifiedKey | None = None,
) -> Path:
    """Write everything; ``spec`` gives port, limits and user, its paths are replaced by the layout's."""
    layout.out_dir.mkdir(parents=True, exist_ok=True)
    layout.ca.write_bytes(ca.cert_pem())
    cert = server_cert or issue_server_certificate(ca, server_names, now=now)
    cert.write(layout.server_cert, layout.server_key)
    write_access_files(layout, agents, services)
    full = full_spec(layout, spec)
    _give_to(spec.user, layout.passwd, layout.acl, layout.server_key)
    return write_mosquitto(full, layout.out_dir)


def full_spec(layout: BrokerLayout, spec: MosquittoSpec) -> MosquittoSpec:
    """``spec`` (port, limits, user) with every path pointing into the layout, TLS and auth on."""
    return MosquittoSpec(
        data_dir=layout.data_dir,
        port=spec.port,
        bind_address=spec.bind_address,
        tls=spec.tls if spec.tls is not None else layout.tls(),
        allow_anonymous=False,
        password_file=layout.passwd,
        acl_file=layout.acl,
        persistence=spec.persistence,
        autosave_interval=spec.autosave_interval,
        max_packet_size=spec.max_packet_size,
        max_inflight_messages=spec.max_inflight_messages,
        max_queued_messages=spec.max_queued_messages,
        max_keepalive=spec.max_keepalive,
        persistent_client_expiration=spec.persistent_client_expiration,
        log_dest=spec.log_dest,
        user=spec.user,
        pid_file=layout.pid_file,
    )


def _give_to(user: str, *paths: Path) -> None:
    """Mosquitto started as root reads its files after dropping to ``user``: let that user read them."""
    if os.geteuid() != 0:
        return
    try:
        entry = pwd.getpwnam(user)
    except KeyError:
        return
    for path in paths:
        os.chown(path, entry.pw_uid, entry.pw_gid)


def reload_broker(pid_file: Path) -> bool:
    """SIGHUP the broker so it rereads passwd and acl. False when no broker runs from this directory."""
    try:
        pid = int(pid_file.read_text().strip())
    except FileNotFoundError:
        return False
    except (OSError, ValueError) as exc:
        raise ReloadFailed(pid_file, "unreadable pid file") from exc
    try:
        os.kill(pid, signal.SIGHUP)
    except ProcessLookupError:
        return False  # a stale pid file: the broker is not running
    except OSError as exc:
        raise ReloadFailed(pid_file, errno.errorcode.get(exc.errno or 0, "error")) from exc
    return True

"""The rendered broker directory, and who owns what in it.

``vigil broker render --out DIR`` writes::

    DIR/mosquitto.conf        the configuration (templates/mosquitto.conf.tmpl)   root:<user's group> 0640
    DIR/ca.pem                the Vigil CA certificate (clients verify the broker)  0644
    DIR/server.pem, .key      the broker's TLS certificate (SAN = the names agents dial) 0644,
                              and its key                                          root:<user's group> 0640
    DIR/dynsec/dynsec.json    accounts, client-id bindings and grants (dynamic security) <user> 0600
                              in <user> 0700: the broker rewrites the file after every change
                              (in place up to Mosquitto 2.0.15, FILE.new + rename from 2.0.16)
    DIR/data/                 persistence (mosquitto.db)                           <user> 0700
    DIR/run/mosquitto.pid     written by Mosquitto; how provisioning knows it runs <user> 0755
    DIR/run/ingest.sock       ingest's own listener (a Unix socket), created by Mosquitto
                              when the spec asks for it                            <user>:<user's group> 0770

Mosquitto started as root drops to ``user`` immediately after reading its configuration and only
then opens the pid file, the persistence file, the log, the plugin's JSON and the TLS files, and
rereads the configuration on SIGHUP as that user. So when rendering as root, everything above is
made reachable by ``user`` (every parent directory must let it through: refused with
:class:`LayoutError` otherwise) and what it writes is owned by it. Rendered by another user,
Mosquitto runs as that user (it only drops privileges when started as root) and ownership is
left as it is.
"""

from __future__ import annotations

import contextlib
import grp
import json
import os
import pwd
import stat
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path

from broker_config.accounts import BrokerAccount
from broker_config.ca import CertifiedKey, issue_server_certificate
from broker_config.dynsec import BrokerState, parse_file, render_dynsec
from broker_config.errors import BrokerConfigError, LayoutError
from broker_config.mosquitto import DynsecFiles, MosquittoSpec, TlsFiles, find_dynsec_plugin, write_mosquitto
from rpm_core.keystore import write_private

__all__ = [
    "BrokerLayout",
    "BrokerUser",
    "dynsec_files",
    "full_spec",
    "persisted_state",
    "render_broker",
    "running_pid",
    "write_dynsec",
]


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
    def dynsec_dir(self) -> Path:
        return self.out_dir / "dynsec"

    @property
    def dynsec_file(self) -> Path:
        return self.dynsec_dir / "dynsec.json"

    @property
    def data_dir(self) -> Path:
        return self.out_dir / "data"

    @property
    def run_dir(self) -> Path:
        return self.out_dir / "run"

    @property
    def pid_file(self) -> Path:
        return self.run_dir / "mosquitto.pid"

    @property
    def ingest_socket(self) -> Path:
        """Ingest's own listener, when rendered (``MosquittoSpec.ingest_socket``): absolute, as Mosquitto needs."""
        return self.run_dir.absolute() / "ingest.sock"

    def tls(self) -> TlsFiles:
        return TlsFiles(cafile=self.ca, certfile=self.server_cert, keyfile=self.server_key)


@dataclass(frozen=True, slots=True)
class BrokerUser:
    """The Unix user Mosquitto runs as after dropping privileges."""

    name: str
    uid: int
    gid: int
    groups: frozenset[int]

    @classmethod
    def lookup(cls, name: str) -> BrokerUser:
        try:
            entry = pwd.getpwnam(name)
        except KeyError:
            raise LayoutError(Path("/etc/passwd"), name, "no such user: create it or set broker_user") from None
        return cls(name, entry.pw_uid, entry.pw_gid, frozenset(os.getgrouplist(name, entry.pw_gid)))

    def may(self, path: Path, want: int) -> bool:
        """Whether this user has permission bits ``want`` (stat.S_IRUSR-style, owner position) on ``path``."""
        if self.uid == 0:
            return True
        st = path.stat()
        if st.st_uid == self.uid:
            return st.st_mode & want == want
        if st.st_gid in self.groups:
            return st.st_mode & (want >> 3) == want >> 3
        return st.st_mode & (want >> 6) == want >> 6

    def check_reachable(self, directory: Path) -> None:
        """Every directory from ``/`` down to ``directory`` lets this user through (search permission)."""
        for p in [*reversed(directory.parents), directory]:
            if not self.may(p, stat.S_IXUSR):
                st = p.stat()
                owner = _name_of(st.st_uid, st.st_gid)
                raise LayoutError(
                    p,
                    self.name,
                    f"the broker user cannot enter this directory (mode {stat.S_IMODE(st.st_mode):04o}, "
                    f"owner {owner}); render into a directory it can reach (e.g. /etc/vigil/broker) or set broker_user",
                )


def _name_of(uid: int, gid: int) -> str:
    try:
        user = pwd.getpwuid(uid).pw_name
    except KeyError:
        user = str(uid)
    try:
        group = grp.getgrgid(gid).gr_name
    except KeyError:
        group = str(gid)
    return f"{user}:{group}"


def _owner(user: str) -> BrokerUser | None:
    """The broker user when rendering as root (ownership to arrange), else None (nothing to arrange)."""
    return BrokerUser.lookup(user) if os.geteuid() == 0 else None


def _own(path: Path, uid: int, gid: int, mode: int) -> None:
    os.chown(path, uid, gid, follow_symlinks=False)
    path.chmod(mode)


def _private_dir(path: Path, owner: BrokerUser | None, mode: int = 0o700) -> None:
    """A directory the broker user writes in (and only it): the directory and what is in it are its."""
    path.mkdir(parents=True, exist_ok=True)
    if owner is None:
        path.chmod(mode)
        return
    _own(path, owner.uid, owner.gid, mode)
    for child in path.iterdir():
        if not child.is_symlink():
            os.chown(child, owner.uid, owner.gid)


def _readable(path: Path, owner: BrokerUser | None, mode: int = 0o640) -> None:
    """A file the broker user reads and must not rewrite: root owns it, the user's group reads it."""
    if owner is None:
        path.chmod(mode)
    else:
        _own(path, 0, owner.gid, mode)


def write_dynsec(layout: BrokerLayout, accounts: Iterable[BrokerAccount], *, user: str | None = None) -> None:
    """Write the plugin's JSON for ``accounts`` (broker stopped: it never rereads it while running)."""
    owner = _owner(user) if user is not None else None
    text = render_dynsec(accounts)
    _private_dir(layout.dynsec_dir, owner)
    write_private(layout.dynsec_file, text.encode())
    if owner is not None:
        os.chown(layout.dynsec_file, owner.uid, owner.gid)


def persisted_state(layout: BrokerLayout) -> BrokerState | None:
    """What the plugin's JSON file holds now; None when this user cannot read it (another user's).

    A file that is not JSON (Mosquitto 2.0.11 rewrites it in place, so a crash mid-write truncates
    it) holds nothing: the broker would start with no account at all.
    """
    try:
        text = layout.dynsec_file.read_text()
    except OSError:
        return None
    try:
        return parse_file(json.loads(text))
    except ValueError:
        return BrokerState({}, {}, {})


def dynsec_files(layout: BrokerLayout, plugin: Path | None = None) -> DynsecFiles:
    """The plugin (``plugin``, or found where distributions install it) and the layout's JSON file."""
    found = plugin or find_dynsec_plugin()
    if found is None:
        raise BrokerConfigError(
            "Mosquitto's dynamic security plugin (mosquitto_dynamic_security.so) was not found: install "
            "Mosquitto 2 (Debian: apt-get install mosquitto) or set broker_dynsec_plugin"
        )
    return DynsecFiles(plugin=found, config_file=layout.dynsec_file)


def full_spec(layout: BrokerLayout, spec: MosquittoSpec) -> MosquittoSpec:
    """``spec`` (port, limits, user, log, plugin) with every path in the layout, TLS and access control on."""
    return replace(
        spec,
        data_dir=layout.data_dir,
        tls=spec.tls if spec.tls is not None else layout.tls(),
        allow_anonymous=False,
        dynsec=dynsec_files(layout, spec.dynsec.plugin if spec.dynsec is not None else None),
        pid_file=layout.pid_file,
    )


def render_broker(
    layout: BrokerLayout,
    *,
    spec: MosquittoSpec,
    ca: CertifiedKey,
    server_names: Sequence[str],
    accounts: Iterable[BrokerAccount] | None,
    now: datetime,
    server_cert: CertifiedKey | None = None,
) -> Path:
    """Write the whole tree for ``spec.user``; ``accounts`` None leaves the plugin's JSON as it is.

    Pass None while the broker runs: it keeps its accounts in memory and rewrites the file itself.
    """
    owner = _owner(spec.user)
    full = full_spec(layout, spec)
    layout.out_dir.mkdir(parents=True, exist_ok=True)
    if owner is not None:
        layout.out_dir.chmod(0o755)
        owner.check_reachable(layout.out_dir)
    layout.ca.write_bytes(ca.cert_pem())
    layout.ca.chmod(0o644)
    cert = server_cert or issue_server_certificate(ca, server_names, now=now)
    cert.write(layout.server_cert, layout.server_key)
    layout.server_cert.chmod(0o644)
    _readable(layout.server_key, owner)
    _private_dir(layout.data_dir, owner)
    _private_dir(layout.run_dir, owner, 0o755)
    if accounts is not None:
        write_dynsec(layout, accounts, user=spec.user)
    else:
        _private_dir(layout.dynsec_dir, owner)
    if full.log_file is not None:
        _log_file(full.log_file, owner)
    for stale in ("passwd", "acl", "mosquitto.pid"):  # what earlier versions rendered
        with contextlib.suppress(FileNotFoundError):
            (layout.out_dir / stale).unlink()
    conf = write_mosquitto(full, layout.out_dir)
    _readable(conf, owner)
    return conf


def _log_file(path: Path, owner: BrokerUser | None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if owner is not None:
        owner.check_reachable(path.parent)
    path.touch(mode=0o640, exist_ok=True)
    if owner is not None:
        os.chown(path, owner.uid, owner.gid, follow_symlinks=False)
        if not owner.may(path, stat.S_IWUSR):
            raise LayoutError(path, owner.name, "the broker user cannot write its log file")


def running_pid(layout: BrokerLayout) -> int | None:
    """The pid of the Mosquitto running from this directory, or None when none runs.

    Read from the pid file Mosquitto writes (and removes on a clean stop); a stale file left by a
    crash, or naming a process that is not Mosquitto, counts as not running.
    """
    try:
        pid = int(layout.pid_file.read_text().strip())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise BrokerConfigError(f"cannot read the broker's pid file {layout.pid_file}: {exc}") from exc
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        pass  # it exists, owned by another user
    try:
        name = Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return pid  # no /proc: trust the pid file
    return pid if name.startswith("mosquitto") else None

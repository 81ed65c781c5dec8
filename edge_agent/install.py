"""``vigil edge install [--root DIR]`` / ``uninstall``: the service user, directories and a hardened unit.

Everything is written under ``root`` (``/`` on a running Pi, a mounted image when building SD
cards), and installing twice changes nothing the second time::

    etc/systemd/system/vigil-edge.service                      the unit (0644)
    etc/systemd/system/vigil-edge.service.d/50-broker-address.conf  where the agent may connect (below)
    etc/systemd/system/multi-user.target.wants/vigil-edge.service -> the unit (what `enable` does)
    usr/lib/sysusers.d/vigil-edge.conf   the service user, member of `bluetooth` (systemd-sysusers)
    usr/lib/tmpfiles.d/vigil-edge.conf   config and state directories, 0700, owned by the user
    etc/vigil/edge/, var/lib/vigil-edge/ the directories themselves (0700)

The user: on ``/`` it is created at once (``useradd``/``groupadd``/``usermod``) and the directories
are given to it. Under another root no command touches this machine's accounts: when the image has
an ``etc/passwd`` and ``systemd-sysusers`` exists, ``systemd-sysusers --root`` adds the user to the
image; otherwise the sysusers.d entry creates it on first boot (systemd-sysusers.service runs
before services start) and the tmpfiles.d entry fixes the directories' ownership.

``uninstall`` removes the unit, the links and the sysusers/tmpfiles entries; the directories (keys
and readings not yet delivered) and the user stay unless ``purge`` is given.

Network: the unit denies every IP address (``IPAddressDeny=any``) but loopback; the drop-in
``50-broker-address.conf`` allows the broker's addresses, resolved from ``broker_host`` when the
agent is enrolled (``vigil edge enroll`` writes it when the unit is installed) or when ``vigil edge
install`` runs on an enrolled agent, plus this machine's name servers from ``/etc/resolv.conf`` (the
agent resolves ``broker_host`` itself). When the broker's address or the name servers change, the
agent cannot connect (its readings wait in the outbox) until ``vigil edge install`` runs again.
BlueZ is reached over the system D-Bus socket (AF_UNIX), which IP filtering does not touch.
"""

from __future__ import annotations

import contextlib
import grp
import ipaddress
import os
import pwd
import shutil
import socket
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from edge_agent.config_file import read_config
from edge_agent.errors import InstallError
from edge_agent.settings import CONFIG_NAME, DEFAULT_CONFIG_DIR, DEFAULT_STATE_DIR

__all__ = [
    "BROKER_DROPIN",
    "UNIT_NAME",
    "InstallPlan",
    "allow_broker",
    "install",
    "name_servers",
    "render_broker_dropin",
    "render_unit",
    "resolve_broker",
    "uninstall",
]

UNIT_NAME: Final = "vigil-edge.service"
BROKER_DROPIN: Final = "50-broker-address.conf"
Runner = Callable[[Sequence[str]], None]
Resolver = Callable[[str, int], Sequence[str]]


@dataclass(frozen=True, slots=True)
class InstallPlan:
    root: Path
    exec_path: Path
    user: str = "vigil-edge"
    config_dir: Path = DEFAULT_CONFIG_DIR
    state_dir: Path = DEFAULT_STATE_DIR

    def under_root(self, path: Path) -> Path:
        return self.root / path.relative_to("/")

    @property
    def live(self) -> bool:
        """Installing onto the running system (not an image)."""
        return self.root.resolve() == Path("/")

    @property
    def unit(self) -> Path:
        return self.under_root(Path("/etc/systemd/system") / UNIT_NAME)

    @property
    def broker_dropin(self) -> Path:
        return self.under_root(Path("/etc/systemd/system") / f"{UNIT_NAME}.d" / BROKER_DROPIN)

    @property
    def wants_link(self) -> Path:
        return self.under_root(Path("/etc/systemd/system/multi-user.target.wants") / UNIT_NAME)

    @property
    def sysusers(self) -> Path:
        return self.under_root(Path("/usr/lib/sysusers.d/vigil-edge.conf"))

    @property
    def tmpfiles(self) -> Path:
        return self.under_root(Path("/usr/lib/tmpfiles.d/vigil-edge.conf"))


def render_unit(plan: InstallPlan) -> str:
    config = plan.config_dir / CONFIG_NAME
    return f"""\
# Vigil edge agent. Written by `vigil edge install`; changes are overwritten on the next install.
[Unit]
Description=Vigil edge agent (BLE medical devices to MQTT)
Documentation=file:///usr/share/doc/vigil/edge-agent.md
Wants=network-online.target bluetooth.target
After=network-online.target bluetooth.target time-sync.target
# Not enrolled yet: stay inactive instead of failing in a loop.
ConditionPathExists={config}
StartLimitIntervalSec=0

[Service]
Type=exec
User={plan.user}
Group={plan.user}
SupplementaryGroups=bluetooth
Environment=VIGIL_CONFIG={config}
ExecStart={plan.exec_path} edge run
Restart=always
RestartSec=5
TimeoutStopSec=20
UMask=0077
StateDirectory={plan.state_dir.relative_to("/var/lib")}
StateDirectoryMode=0700
ReadWritePaths={plan.state_dir}
ReadOnlyPaths={plan.config_dir}
NoNewPrivileges=yes
ProtectSystem=strict
ProtectHome=yes
PrivateTmp=yes
PrivateDevices=yes
ProtectKernelTunables=yes
ProtectKernelModules=yes
ProtectKernelLogs=yes
ProtectControlGroups=yes
ProtectClock=yes
ProtectHostname=yes
ProtectProc=invisible
ProcSubset=pid
# AF_UNIX: the system D-Bus socket, through which bleak talks to BlueZ; AF_INET(6): the broker.
RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6
# No IP peer but loopback; {BROKER_DROPIN} (written at enrollment) allows the broker and name servers.
IPAddressDeny=any
IPAddressAllow=localhost
# No writable-and-executable memory: CPython 3.11, libsodium (PyNaCl), SQLite and dbus-fast need none.
MemoryDenyWriteExecute=yes
# Own user namespace (only root and {plan.user} mapped): D-Bus still sees the real uid and groups
# (kernel credentials), so BlueZ's bus policy applies as without it; see docs/edge-agent.md.
PrivateUsers=yes
PrivateMounts=yes
RestrictNamespaces=yes
RestrictRealtime=yes
RestrictSUIDSGID=yes
LockPersonality=yes
RemoveIPC=yes
KeyringMode=private
CapabilityBoundingSet=
AmbientCapabilities=
SystemCallArchitectures=native
SystemCallFilter=@system-service
SystemCallFilter=~@privileged @resources
MemoryMax=256M

[Install]
WantedBy=multi-user.target
"""


def _sysusers(plan: InstallPlan) -> str:
    return (
        "# Vigil edge agent service user (vigil edge install)\n"
        "g bluetooth - -\n"
        f'u {plan.user} - "Vigil edge agent" {plan.state_dir} /usr/sbin/nologin\n'
        f"m {plan.user} bluetooth\n"
    )


def _tmpfiles(plan: InstallPlan) -> str:
    return (
        "# Vigil edge agent directories (vigil edge install)\n"
        f"d {plan.config_dir} 0700 {plan.user} {plan.user} -\n"
        f"Z {plan.config_dir} - {plan.user} {plan.user} -\n"
        f"d {plan.state_dir} 0700 {plan.user} {plan.user} -\n"
    )


def _getaddrinfo(host: str, port: int) -> Sequence[str]:
    return [str(info[4][0]) for info in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)]


def resolve_broker(host: str, port: int, *, resolver: Resolver = _getaddrinfo) -> tuple[str, ...]:
    """The addresses ``host`` stands for now (an address stands for itself); raises :class:`InstallError`."""
    try:
        return (str(ipaddress.ip_address(host)),)
    except ValueError:
        pass
    try:
        found = {str(ipaddress.ip_address(a.split("%", 1)[0])) for a in resolver(host, port)}
    except (OSError, ValueError) as exc:
        raise InstallError(f"cannot resolve the broker host {host!r} now: {type(exc).__name__}") from exc
    if not found:
        raise InstallError(f"the broker host {host!r} resolves to no address")
    return tuple(sorted(found))


def name_servers(root: Path) -> tuple[str, ...]:
    """The non-loopback name servers of ``{root}/etc/resolv.conf`` (loopback ones are allowed anyway)."""
    try:
        lines = (root / "etc" / "resolv.conf").read_text().splitlines()
    except OSError:
        return ()
    found: list[str] = []
    for line in lines:
        fields = line.split()
        if len(fields) >= 2 and fields[0] == "nameserver":
            try:
                address = ipaddress.ip_address(fields[1].split("%", 1)[0])
            except ValueError:
                continue
            if not address.is_loopback and str(address) not in found:
                found.append(str(address))
    return tuple(found)


def render_broker_dropin(host: str, addresses: Sequence[str], servers: Sequence[str]) -> str:
    lines = [
        "# Written by `vigil edge enroll` / `vigil edge install`; rewritten by them. The unit denies every IP",
        f"# address but loopback; the agent may reach only these besides: the broker {host} as it resolved then,",
        "# and the name servers of /etc/resolv.conf. When either changes, run `vigil edge install` again and",
        "# restart the agent (until then it cannot connect; readings wait in its outbox).",
        "[Service]",
        *(f"IPAddressAllow={a}" for a in addresses),
        *(f"IPAddressAllow={a}" for a in servers),
    ]
    return "\n".join(lines) + "\n"


def allow_broker(
    plan: InstallPlan, host: str, port: int, *, resolver: Resolver = _getaddrinfo, run: Runner | None = None
) -> list[str]:
    """Write the drop-in allowing ``host``'s current addresses; returns what changed."""
    actions: list[str] = []
    addresses = resolve_broker(host, port, resolver=resolver)
    _write(plan.broker_dropin, render_broker_dropin(host, addresses, name_servers(plan.root)), 0o644, actions)
    if actions and plan.live and Path("/run/systemd/system").is_dir():
        (run or _run)(["systemctl", "daemon-reload"])
    return actions


def _enrolled_broker(plan: InstallPlan) -> tuple[str, int] | None:
    values = read_config(plan.under_root(plan.config_dir / CONFIG_NAME))
    host = values.get("broker_host")
    return None if not isinstance(host, str) else (host, int(values.get("broker_port", 8883)))


def _run(command: Sequence[str]) -> None:
    try:
        subprocess.run(list(command), check=True, capture_output=True, text=True)  # noqa: S603
    except subprocess.CalledProcessError as exc:
        raise InstallError(f"{command[0]} failed: {exc.stderr.strip()[:300]}") from exc
    except OSError as exc:
        raise InstallError(f"cannot run {command[0]}: {exc.strerror}") from exc


def _write(path: Path, text: str, mode: int, actions: list[str]) -> None:
    if path.is_file() and path.read_text() == text and (path.stat().st_mode & 0o777) == mode:
        return
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o755)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    tmp.chmod(mode)
    os.replace(tmp, path)
    actions.append(f"wrote {path}")


def _link(plan: InstallPlan, actions: list[str]) -> None:
    target = Path("/etc/systemd/system") / UNIT_NAME
    link = plan.wants_link
    if link.is_symlink() and Path(os.readlink(link)) == target:
        return
    link.parent.mkdir(parents=True, exist_ok=True, mode=0o755)
    if link.is_symlink() or link.exists():
        link.unlink()
    link.symlink_to(target)
    actions.append(f"enabled {UNIT_NAME}")


def _create_user(plan: InstallPlan, run: Runner, actions: list[str]) -> None:
    try:
        grp.getgrnam("bluetooth")
    except KeyError:
        run(["groupadd", "--system", "bluetooth"])
        actions.append("created group bluetooth")
    try:
        pwd.getpwnam(plan.user)
    except KeyError:
        run(["useradd", "--system", "--user-group", "--home-dir", str(plan.state_dir), "--no-create-home",
             "--shell", "/usr/sbin/nologin", "--comment", "Vigil edge agent", plan.user])  # fmt: skip
        actions.append(f"created user {plan.user}")
    if plan.user not in grp.getgrnam("bluetooth").gr_mem:
        run(["usermod", "--append", "--groups", "bluetooth", plan.user])
        actions.append(f"added {plan.user} to bluetooth")


def _image_ids(plan: InstallPlan) -> tuple[int, int] | None:
    """The service user's uid/gid from the image's passwd, if it has one."""
    passwd = plan.under_root(Path("/etc/passwd"))
    if not passwd.is_file():
        return None
    for line in passwd.read_text().splitlines():
        fields = line.split(":")
        if len(fields) >= 4 and fields[0] == plan.user:
            return int(fields[2]), int(fields[3])
    return None


def install(plan: InstallPlan, *, run: Runner = _run) -> list[str]:
    """Install (or bring up to date); returns what was changed, empty when nothing was."""
    if not plan.exec_path.is_absolute():
        raise InstallError("the agent executable must be an absolute path", path=plan.exec_path)
    actions: list[str] = []
    _write(plan.unit, render_unit(plan), 0o644, actions)
    _write(plan.sysusers, _sysusers(plan), 0o644, actions)
    _write(plan.tmpfiles, _tmpfiles(plan), 0o644, actions)
    _link(plan, actions)
    broker = _enrolled_broker(plan)
    if broker is not None:  # enrolled already: (re)resolve the broker for the unit's allow-list
        try:
            actions += allow_broker(plan, *broker, run=lambda _cmd: None)
        except InstallError as exc:  # offline: keep what the drop-in said, and say so
            actions.append(f"warning: {exc}; {plan.broker_dropin} left as it was (run this again when online)")
    if plan.live:
        _create_user(plan, run, actions)
    elif (
        plan.under_root(Path("/etc/passwd")).is_file() and shutil.which("systemd-sysusers") and _image_ids(plan) is None
    ):
        run(["systemd-sysusers", f"--root={plan.root}", str(plan.sysusers)])
        actions.append(f"created user {plan.user} in the image")
    ids = (pwd.getpwnam(plan.user).pw_uid, pwd.getpwnam(plan.user).pw_gid) if plan.live else _image_ids(plan)
    for directory in (plan.config_dir, plan.state_dir):
        path = plan.under_root(directory)
        if not path.is_dir():
            path.mkdir(parents=True, mode=0o700)
            actions.append(f"created {path}")
        if (path.stat().st_mode & 0o777) != 0o700:
            path.chmod(0o700)
            actions.append(f"chmod 0700 {path}")
        if ids is not None and os.geteuid() == 0 and (path.stat().st_uid, path.stat().st_gid) != ids:
            for sub in (path, *path.rglob("*")):
                os.chown(sub, *ids, follow_symlinks=False)
            actions.append(f"gave {path} to {plan.user}")
    if plan.live and actions and Path("/run/systemd/system").is_dir():
        run(["systemctl", "daemon-reload"])
    return actions


def uninstall(plan: InstallPlan, *, purge: bool = False, run: Runner = _run) -> list[str]:
    actions: list[str] = []
    for path in (plan.wants_link, plan.unit, plan.broker_dropin, plan.sysusers, plan.tmpfiles):
        if path.is_symlink() or path.exists():
            path.unlink()
            actions.append(f"removed {path}")
    with contextlib.suppress(OSError):  # only if nothing else is in it
        plan.broker_dropin.parent.rmdir()
    if purge:
        for directory in (plan.config_dir, plan.state_dir):
            path = plan.under_root(directory)
            if path.exists():
                shutil.rmtree(path)
                actions.append(f"removed {path} (keys and undelivered readings)")
        if plan.live:
            try:
                pwd.getpwnam(plan.user)
            except KeyError:
                pass
            else:
                run(["userdel", plan.user])
                actions.append(f"removed user {plan.user}")
    if plan.live and Path("/run/systemd/system").is_dir():
        run(["systemctl", "daemon-reload"])
    return actions

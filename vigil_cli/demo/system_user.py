"""Started as root, ``vigil demo`` runs as an unprivileged system user it creates: ``vigil-demo``.

The demo needs root for nothing. Run by root it creates the user once (``useradd --system``, no
login shell, no home; later runs reuse it), checks that the user can read Vigil's code and
virtualenv and reach the demo directory, makes the demo directory the user's, and then drops the
*whole* demo process to that user before it does anything else. Every process it starts after that
(PostgreSQL, Mosquitto, ingest, the alert engine, the API, the agents) inherits the user, so there
is one code path: the same one a developer gets who runs the demo as themselves.

Nothing here changes a permission on disk. When a directory on the way to the code is closed to
the user (Python or the clone in a 0700 home such as ``/root``), the demo gives itself a private
mount namespace (:func:`private_view`) in which that directory is an empty, world-traversable
tmpfs holding only bind mounts of the entries the demo needs (the interpreter, the virtualenv, the
clone): the user reaches Vigil's code and nothing else of that home, nothing outside the demo sees
a change, and the view disappears with the demo's last process. Where mount namespaces are not
allowed (an unprivileged container) the demo stops and says what to do instead.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import pwd
import shutil
import stat
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Final

__all__ = [
    "DEMO_USER",
    "SystemUser",
    "SystemUserError",
    "become",
    "check_access",
    "closed_directories",
    "ensure_demo_user",
    "hand_over",
    "private_view",
]

DEMO_USER: Final = "vigil-demo"
# What a child of the demo imports: a probe that imports these as the user proves it can run them.
_PROBE_MODULES: Final = (
    "vigil_cli.main",
    "vigil_cli.demo.command",
    "store.cli",
    "ingest.cli",
    "alerts.cli",
    "clinician_api.cli",
    "edge_agent.cli",
)


class SystemUserError(Exception):
    """The demo cannot run as its system user; the message says what to do."""


@dataclass(frozen=True)
class SystemUser:
    name: str
    uid: int
    gid: int

    @classmethod
    def lookup(cls, name: str = DEMO_USER) -> SystemUser | None:
        try:
            entry = pwd.getpwnam(name)
        except KeyError:
            return None
        return cls(entry.pw_name, entry.pw_uid, entry.pw_gid)


def _nologin() -> str:
    for candidate in ("/usr/sbin/nologin", "/sbin/nologin"):
        if Path(candidate).exists():
            return candidate
    return "/bin/false"


def ensure_demo_user(say: Callable[[str], None], name: str = DEMO_USER) -> SystemUser:
    """The demo's system user, created (no login shell, no home directory) if it does not exist yet."""
    user = SystemUser.lookup(name)
    if user is None:
        useradd = shutil.which("useradd") or "/usr/sbin/useradd"
        argv = [
            useradd, "--system", "--user-group", "--shell", _nologin(), "--home-dir", "/nonexistent",
            "--no-create-home", "--comment", "Vigil demo (vigil demo)", name,
        ]  # fmt: skip
        try:
            done = subprocess.run(argv, capture_output=True, text=True, check=False)  # noqa: S603
        except OSError as exc:
            raise SystemUserError(f"cannot create the system user {name}: {exc}") from exc
        if done.returncode != 0:
            detail = (done.stderr or done.stdout).strip() or f"exit status {done.returncode}"
            raise SystemUserError(f"cannot create the system user {name} (useradd): {detail}")
        user = SystemUser.lookup(name)
        if user is None:  # pragma: no cover - useradd said it succeeded
            raise SystemUserError(f"useradd reported success but there is no user {name}")
        say(
            f"running as root: created the system user {name} (no login shell, no home directory) to run "
            f"the demo's processes; later runs reuse it (remove it with: userdel {name})"
        )
    if user.uid == 0 or user.gid == 0:
        raise SystemUserError(f"the user {name} has uid or gid 0: it must be an unprivileged user")
    return user


def _closed_to(path: Path, user: SystemUser) -> bool:
    """``user`` may not traverse the directory ``path`` (by its mode bits)."""
    st = path.stat()
    if st.st_uid == user.uid:
        return not st.st_mode & stat.S_IXUSR
    if st.st_gid == user.gid:
        return not st.st_mode & stat.S_IXGRP
    return not st.st_mode & stat.S_IXOTH


def closed_directories(targets: Iterable[Path], user: SystemUser) -> list[Path]:
    """For each target, the outermost directory on its way (itself included) ``user`` cannot traverse."""
    closed: set[Path] = set()
    for target in targets:
        for step in (*reversed(target.parents), target):
            if step.is_dir() and _closed_to(step, user):
                closed.add(step)
                break
    return sorted(closed, key=lambda p: (len(p.parts), str(p)))


_CLONE_NEWNS: Final = 0x00020000
_MS_RDONLY: Final = 1
_MS_NOSUID: Final = 2
_MS_NODEV: Final = 4
_MS_BIND: Final = 4096
_MS_REC: Final = 16384
_MS_REMOUNT: Final = 32
_MS_PRIVATE: Final = 1 << 18
_MNT_DETACH: Final = 2


def _libc_call(name: str, *args: object) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    call: Callable[..., int] = getattr(libc, name)
    if call(*args) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"{name}: {os.strerror(errno)}")


def _c(value: str | None) -> bytes | None:
    return None if value is None else value.encode()


def _mount(source: str | None, target: Path, fstype: str | None, flags: int, data: str | None = None) -> None:
    enc = _c
    _libc_call("mount", enc(source), str(target).encode(), enc(fstype), ctypes.c_ulong(flags), enc(data))


def private_view(targets: Iterable[Path], user: SystemUser, *, max_steps: int = 32) -> list[Path]:
    """Give this process (and its future children) a mount namespace in which ``user`` can reach
    every target: each closed directory on the way becomes a 0755 tmpfs holding bind mounts of only
    the entries leading to a target. Returns the directories so covered; OSError if not allowed.

    Call it from the main thread before any thread or child is started.
    """
    wanted = [t.resolve() for t in targets]
    covered: list[Path] = []
    if not closed_directories(wanted, user):
        return covered
    _libc_call("unshare", _CLONE_NEWNS)
    _mount(None, Path("/"), None, _MS_REC | _MS_PRIVATE)  # nothing we mount here reaches the host
    staging = Path(tempfile.mkdtemp(prefix="vigil-demo-view-"))
    try:
        for step in range(max_steps):
            closed = closed_directories(wanted, user)
            if not closed:
                return covered
            shut = closed[0]
            keep = sorted({t.relative_to(shut).parts[0] for t in wanted if shut in t.parents})
            original = staging / str(step)
            original.mkdir()
            _mount(str(shut), original, None, _MS_BIND | _MS_REC)
            _mount("tmpfs", shut, "tmpfs", _MS_NOSUID | _MS_NODEV, "mode=0755,size=64k")
            for name in keep:
                src, dst = original / name, shut / name
                if src.is_dir():
                    dst.mkdir()
                else:
                    dst.touch()
                _mount(str(src), dst, None, _MS_BIND | _MS_REC)
            _mount(None, shut, None, _MS_REMOUNT | _MS_BIND | _MS_RDONLY | _MS_NOSUID | _MS_NODEV)
            _libc_call("umount2", str(original).encode(), _MNT_DETACH)  # the binds above stay
            original.rmdir()
            covered.append(shut)
        raise OSError(f"more than {max_steps} closed directories on the way to {', '.join(map(str, wanted))}")
    finally:
        # Never a recursive delete here: a staging directory may still be a bind of a real one.
        for leftover in staging.iterdir():
            with contextlib.suppress(OSError):
                _libc_call("umount2", str(leftover).encode(), _MNT_DETACH)
            with contextlib.suppress(OSError):
                leftover.rmdir()
        with contextlib.suppress(OSError):
            staging.rmdir()


def check_access(
    user: SystemUser, root: Path, *, writable: Iterable[Path] = (), executables: Iterable[Path] = ()
) -> None:
    """Prove, by doing it as ``user``, that it can import Vigil, reach ``root``, write into the
    ``writable`` directories that exist (an operator's key or broker directory) and run ``executables``."""
    script = (
        "import importlib, os, sys\n"
        "for m in sys.argv[1].split(','): importlib.import_module(m)\n"
        "os.stat(sys.argv[2])\n"
        "for d in sys.argv[3:]:\n"
        "    if os.path.exists(d) and not os.access(d, os.W_OK | os.X_OK): sys.exit(f'{d} is not writable')\n"
    )
    dirs = [str(d) for d in writable]
    probes: list[tuple[str, list[str]]] = [
        (
            f"read Vigil's code and virtualenv ({sys.prefix}), reach {root} or write {', '.join(dirs) or 'there'}",
            [sys.executable, "-c", script, ",".join(_PROBE_MODULES), str(root), *dirs],
        )
    ]
    probes += [(f"run {exe}", [str(exe), "--version"]) for exe in executables]
    for what, argv in probes:
        try:
            done = subprocess.run(  # noqa: S603 - our own interpreter and binaries
                argv, capture_output=True, text=True, check=False, cwd="/", timeout=120,
                user=user.uid, group=user.gid, extra_groups=[],
            )  # fmt: skip
            failed = done.returncode != 0
            detail = ((done.stderr or done.stdout).strip().splitlines() or [f"exit status {done.returncode}"])[-1]
        except (OSError, subprocess.TimeoutExpired) as exc:
            failed, detail = True, str(exc)
        if failed:
            raise SystemUserError(
                f"started as root, the demo runs as the system user {user.name}, which cannot {what}: {detail}. "
                f"Put Vigil where other users can read it (clone it under /opt or /srv, not in a private home such "
                f"as /root), keep --dir (and any VIGIL_KEY_DIR, VIGIL_BROKER_DIR) where {user.name} can reach "
                f"them, or run ./run.sh demo as a normal user"
            )


def hand_over(root: Path, user: SystemUser) -> None:
    """Make ``root`` and everything in it ``user``'s (a directory from an earlier run as root included)."""
    os.lchown(root, user.uid, user.gid)
    for parent, dirs, files in os.walk(root):
        for name in (*dirs, *files):
            os.lchown(os.path.join(parent, name), user.uid, user.gid)


def become(user: SystemUser, home: Path) -> None:
    """Drop this process to ``user`` for good (groups, gid, uid), with an environment to match;
    ``home`` (in the demo directory) stands in for the home directory the user does not have."""
    os.setgroups([])
    os.setgid(user.gid)
    os.setuid(user.uid)
    os.umask(0o077)  # what the demo writes (keys, database, logs) is the demo user's alone
    os.environ.update({"USER": user.name, "LOGNAME": user.name, "HOME": str(home)})
    for var in ("XDG_RUNTIME_DIR", "MAIL", "SUDO_USER", "SUDO_UID", "SUDO_GID"):
        os.environ.pop(var, None)

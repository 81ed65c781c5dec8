"""The server's key directory: generations of server keys on disk, for rotation; how secrets are written.

Layout (every private file mode 0600, directories 0700)::

    {key_dir}/server/0001/kex.pem     X25519 key agreement key  (PKCS#8 PEM)
    {key_dir}/server/0001/sign.pem    Ed25519 receipt/config signing key
    {key_dir}/server/0002/...         a newer generation after ``vigil keys rotate``

The highest generation is *current*: new enrollment bundles name it first and receipts are signed
with it. Every generation still on disk is accepted when opening envelopes (agents switch after a
config push or re-enrollment); ``vigil keys retire`` deletes the oldest ones. Other services keep
their own files beside it (the CA under ``ca/``, broker service passwords under ``mqtt/``).

Writing secrets (:func:`write_private`, used for every key, password and credentials file of the
server and the agent): a fresh temporary file with an unpredictable name beside the target, opened
``O_CREAT | O_EXCL | O_NOFOLLOW`` with mode 0600 (never an existing file, never through a symlink,
never readable by others even for an instant), written, ``fsync``-ed, then renamed over the target.
``rename`` replaces a symlink planted at the target itself instead of writing through it. A
directory that holds secrets is made 0700 by :func:`ensure_private_dir`, which also tightens one
found looser (with a warning naming it).
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import shutil
import stat
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from rpm_core.errors import ConfigError
from rpm_core.keys import ServerKey, ServerPublicKey

__all__ = [
    "ServerKeyring",
    "create_server_key",
    "ensure_private_dir",
    "load_server_keys",
    "retire_server_keys",
    "write_private",
]

_log = logging.getLogger(__name__)
_SERVER: Final = "server"
_PRIVATE_DIR: Final = 0o700
_PRIVATE_FILE: Final = 0o600
_CREATE: Final = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


def _make_leaf(path: Path) -> None:
    """Create the directory ``path`` mode 0700 if it is missing; its missing parents get the default mode.

    Only the directory that holds the secret is private: a parent such as ``/etc/vigil`` must stay
    traversable for other services' directories beside it (the broker's, the agent's).
    """
    if path.exists() or path.is_symlink():
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileExistsError):  # a concurrent writer made it: fine
        path.mkdir(mode=_PRIVATE_DIR)
        os.chmod(path, _PRIVATE_DIR)  # mkdir's mode is cut by the umask


def ensure_private_dir(path: Path) -> None:
    """Make ``path`` a directory only its owner can enter (0700): create it, or tighten it.

    Parents it has to create get the default mode, existing ones are left as they are (they need
    not be secret). A directory found with group or other bits is tightened and a warning names it
    and its old mode.
    """
    _make_leaf(path)
    st = path.stat()
    if not stat.S_ISDIR(st.st_mode):
        raise ConfigError(f"{path} should be a directory holding secrets, but it is not a directory")
    old = stat.S_IMODE(st.st_mode)
    if old != _PRIVATE_DIR:
        os.chmod(path, _PRIVATE_DIR)
        if old & 0o077:
            _log.warning("tightened %s from %04o to 0700 (it holds secrets)", path, old)


def write_private(path: Path, data: bytes) -> None:
    """Write ``data`` to a new or replaced file readable only by its owner (mode 0600).

    A missing parent directory is created 0700; an existing one is used as it is (a bundle may be
    written into any directory the operator names). Neither a file nor a symlink planted at a
    temporary name, nor a symlink at ``path``, is ever written through.
    """
    directory = path.parent
    _make_leaf(directory)
    tmp = directory / f".{path.name}.{secrets.token_hex(8)}.tmp"
    fd = os.open(tmp, _CREATE, _PRIVATE_FILE)
    try:
        os.fchmod(fd, _PRIVATE_FILE)  # the umask could only have removed bits; say it explicitly
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        tmp.unlink(missing_ok=True)
        raise
    os.close(fd)
    try:
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(directory)


def _fsync_dir(directory: Path) -> None:
    """Make the rename durable (a power cut must not bring the old file back)."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@dataclass(frozen=True, slots=True)
class ServerKeyring:
    """Every server key generation still accepted, oldest first; the last one is current."""

    generations: tuple[tuple[int, ServerKey], ...]

    def __post_init__(self) -> None:
        if not self.generations:
            raise ConfigError("no server key: run `vigil keys init`")

    @property
    def current(self) -> ServerKey:
        return self.generations[-1][1]

    @property
    def by_kid(self) -> Mapping[str, ServerKey]:
        return {key.kid: key for _, key in self.generations}

    def public_keys(self) -> tuple[ServerPublicKey, ...]:
        """Current first (the order an enrollment bundle lists them)."""
        return tuple(key.public() for _, key in reversed(self.generations))


def _generation_dirs(key_dir: Path) -> list[tuple[int, Path]]:
    root = key_dir / _SERVER
    if not root.is_dir():
        return []
    return sorted((int(p.name), p) for p in root.iterdir() if p.is_dir() and p.name.isdigit())


def load_server_keys(key_dir: Path) -> ServerKeyring:
    gens: list[tuple[int, ServerKey]] = []
    for gen, path in _generation_dirs(key_dir):
        try:
            key = ServerKey.from_pem((path / "kex.pem").read_bytes(), (path / "sign.pem").read_bytes())
        except OSError as exc:
            raise ConfigError(f"cannot read server key generation {gen} in {path}: {exc.strerror}") from exc
        gens.append((gen, key))
    return ServerKeyring(tuple(gens))


def create_server_key(key_dir: Path, key: ServerKey | None = None) -> int:
    """Add a new generation (the new current key); return its number."""
    existing = _generation_dirs(key_dir)
    gen = existing[-1][0] + 1 if existing else 1
    key = ServerKey.generate() if key is None else key
    ensure_private_dir(key_dir)
    ensure_private_dir(key_dir / _SERVER)
    path = key_dir / _SERVER / f"{gen:04d}"
    path.mkdir(mode=_PRIVATE_DIR)  # a new generation: never an existing directory
    os.chmod(path, _PRIVATE_DIR)
    write_private(path / "kex.pem", key.kex_pem())
    write_private(path / "sign.pem", key.sign_pem())
    return gen


def retire_server_keys(key_dir: Path, *, keep: int) -> list[int]:
    """Delete all but the newest ``keep`` generations; return the generations deleted."""
    if keep < 1:
        raise ConfigError("keep at least the current server key")
    existing = _generation_dirs(key_dir)
    doomed = existing[:-keep] if len(existing) > keep else []
    for _, path in doomed:
        shutil.rmtree(path)
    return [gen for gen, _ in doomed]

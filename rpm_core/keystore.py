"""The server's key directory: generations of server keys on disk, for rotation.

Layout (every private file mode 0600, directories 0700)::

    {key_dir}/server/0001/kex.pem     X25519 key agreement key  (PKCS#8 PEM)
    {key_dir}/server/0001/sign.pem    Ed25519 receipt/config signing key
    {key_dir}/server/0002/...         a newer generation after ``vigil keys rotate``

The highest generation is *current*: new enrollment bundles name it first and receipts are signed
with it. Every generation still on disk is accepted when opening envelopes (agents switch after a
config push or re-enrollment); ``vigil keys retire`` deletes the oldest ones. Other services keep
their own files beside it (the CA under ``ca/``, broker service passwords under ``mqtt/``).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from rpm_core.errors import ConfigError
from rpm_core.keys import ServerKey, ServerPublicKey

__all__ = ["ServerKeyring", "create_server_key", "load_server_keys", "retire_server_keys", "write_private"]

_SERVER: Final = "server"


def write_private(path: Path, data: bytes) -> None:
    """Write ``data`` to a new or replaced file readable only by its owner (mode 0600)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


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
    path = key_dir / _SERVER / f"{gen:04d}"
    path.mkdir(parents=True, mode=0o700)
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

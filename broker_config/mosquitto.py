"""Render a complete Mosquitto configuration from a typed spec.

The template lives in ``templates/mosquitto.conf.tmpl``; everything variable comes from a
:class:`MosquittoSpec`, so tests, the demo and production render the same file.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from string import Template
from typing import Final, Literal

__all__ = ["MosquittoSpec", "TlsFiles", "find_mosquitto", "render_mosquitto", "write_mosquitto"]

CONF_NAME: Final = "mosquitto.conf"


@dataclass(frozen=True, slots=True)
class TlsFiles:
    cafile: Path
    certfile: Path
    keyfile: Path
    # Agents authenticate with username/password over TLS (their keys are generated on the Pi, so
    # there is no client certificate to check). Client certificates remain possible for other setups.
    require_certificate: bool = False
    use_identity_as_username: bool = False
    # The minimum version (Mosquitto >= 2.0): TLS 1.2 and 1.3 are accepted, 1.0 and 1.1 refused.
    tls_version: Literal["tlsv1.2", "tlsv1.3"] = "tlsv1.2"


@dataclass(frozen=True, slots=True)
class MosquittoSpec:
    data_dir: Path
    port: int = 8883
    bind_address: str = "127.0.0.1"
    tls: TlsFiles | None = None
    allow_anonymous: bool = False
    password_file: Path | None = None
    acl_file: Path | None = None
    persistence: bool = True
    autosave_interval: int = 60
    max_packet_size: int = 512 * 1024
    max_inflight_messages: int = 1000
    max_queued_messages: int = 200_000
    max_keepalive: int = 300
    persistent_client_expiration: str = "14d"
    log_dest: str = "stderr"
    # Mosquitto started as root drops privileges to this user (tests run it as themselves).
    user: str = "mosquitto"
    # Where Mosquitto writes its pid: `vigil agents create/revoke` send SIGHUP there to reload the
    # password and ACL files.
    pid_file: Path | None = None

    def __post_init__(self) -> None:
        if not 0 < self.port < 65536:
            raise ValueError("port out of range")
        cert_users = self.tls is not None and self.tls.use_identity_as_username
        if not (cert_users or self.allow_anonymous or self.password_file is not None):
            raise ValueError("without TLS client certificates, anonymous access or a password file is needed")
        if self.max_inflight_messages < 1:
            raise ValueError("max_inflight_messages must be set (0 would mean unlimited)")


def _tls_block(tls: TlsFiles | None) -> str:
    if tls is None:
        return "# plain TCP listener (tests only; production listeners use TLS)"
    lines = [
        "# TLS: our CA, TLS 1.2 minimum, no plaintext listener.",
        f"cafile {tls.cafile}",
        f"certfile {tls.certfile}",
        f"keyfile {tls.keyfile}",
        f"tls_version {tls.tls_version}",
        f"require_certificate {str(tls.require_certificate).lower()}",
        f"use_identity_as_username {str(tls.use_identity_as_username).lower()}",
    ]
    return "\n".join(lines)


def render_mosquitto(spec: MosquittoSpec) -> str:
    template = Template(resources.files("broker_config").joinpath("templates/mosquitto.conf.tmpl").read_text())
    return template.substitute(
        allow_anonymous=str(spec.allow_anonymous).lower(),
        password_line=f"password_file {spec.password_file}" if spec.password_file else "# no password file",
        acl_line=f"acl_file {spec.acl_file}" if spec.acl_file else "# no ACL file",
        persistence=str(spec.persistence).lower(),
        data_dir=spec.data_dir,
        autosave_interval=spec.autosave_interval,
        max_packet_size=spec.max_packet_size,
        max_inflight_messages=spec.max_inflight_messages,
        max_queued_messages=spec.max_queued_messages,
        max_keepalive=spec.max_keepalive,
        persistent_client_expiration=spec.persistent_client_expiration,
        log_dest=spec.log_dest,
        port=spec.port,
        bind_address=spec.bind_address,
        tls_block=_tls_block(spec.tls),
        user=spec.user,
        pid_line=f"pid_file {spec.pid_file}" if spec.pid_file else "# no pid file",
    )


def find_mosquitto() -> str | None:
    """The ``mosquitto`` executable: on PATH, or where Debian puts it (sbin is not on a user's PATH)."""
    return shutil.which("mosquitto") or next(
        (p for p in ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto") if os.access(p, os.X_OK)), None
    )


def write_mosquitto(spec: MosquittoSpec, out_dir: Path) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    spec.data_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / CONF_NAME
    path.write_text(render_mosquitto(spec))
    path.chmod(0o640)
    return path

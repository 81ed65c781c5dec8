"""Render a complete Mosquitto configuration from a typed spec.

The template lives in ``templates/mosquitto.conf.tmpl``; everything variable comes from a
:class:`MosquittoSpec`, so tests, the demo and production render the same file.

Access control is Mosquitto's dynamic security plugin (:class:`DynsecFiles`), not a password file
and an ACL file: Mosquitto's ACL file grants every SUBSCRIBE and filters only at delivery, so an
agent could join ingest's ``$share/ingest/...`` group and take round-robin turns whose messages
were then dropped; the plugin checks each SUBSCRIBE filter, ``$share/`` prefix included, when it
arrives, and binds each account to its client id (see :mod:`broker_config.accounts`).
"""

from __future__ import annotations

import glob
import os
import shutil
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from string import Template
from typing import Final, Literal

from broker_config.errors import BrokerConfigError

__all__ = [
    "TLS12_CIPHERS",
    "TLS13_SUITES",
    "UNIX_PATH_MAX",
    "DynsecFiles",
    "MosquittoSpec",
    "TlsFiles",
    "check_socket_path",
    "find_dynsec_plugin",
    "find_mosquitto",
    "render_mosquitto",
    "write_mosquitto",
]

CONF_NAME: Final = "mosquitto.conf"
PLUGIN_NAME: Final = "mosquitto_dynamic_security.so"
# sockaddr_un.sun_path holds 108 bytes on Linux, the terminating NUL included: Mosquitto 2.0.11
# truncates a longer path silently (strncpy), so a longer one is refused here.
UNIX_PATH_MAX: Final = 107

# TLS 1.2: forward-secret ECDHE key exchange and AEAD ciphers only (no CBC, no SHA-1 MAC, no RSA
# key exchange). Our server key is ECDSA P-256; the RSA-signed variants serve a certificate an
# operator brings. OpenSSL names, as Mosquitto's `ciphers` option takes them.
TLS12_CIPHERS: Final = ":".join(
    (
        "ECDHE-ECDSA-AES128-GCM-SHA256",
        "ECDHE-ECDSA-AES256-GCM-SHA384",
        "ECDHE-ECDSA-CHACHA20-POLY1305",
        "ECDHE-RSA-AES128-GCM-SHA256",
        "ECDHE-RSA-AES256-GCM-SHA384",
        "ECDHE-RSA-CHACHA20-POLY1305",
    )
)
# TLS 1.3: every suite is AEAD with ephemeral key exchange; named so a library default cannot widen it.
TLS13_SUITES: Final = "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256"


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
    ciphers: str = TLS12_CIPHERS
    ciphers_tls13: str = TLS13_SUITES


@dataclass(frozen=True, slots=True)
class DynsecFiles:
    """The dynamic security plugin and its JSON file (the broker rewrites it after every change)."""

    plugin: Path
    config_file: Path


@dataclass(frozen=True, slots=True)
class MosquittoSpec:
    data_dir: Path
    port: int = 8883
    bind_address: str = "127.0.0.1"
    tls: TlsFiles | None = None
    allow_anonymous: bool = False
    dynsec: DynsecFiles | None = None
    persistence: bool = True
    # Seconds between saves of the in-memory state (queued messages, sessions) to data_dir: what
    # a `kill -9` of the broker can lose. A clean stop always saves.
    autosave_interval: int = 60
    max_packet_size: int = 512 * 1024
    max_inflight_messages: int = 1000
    max_queued_messages: int = 200_000
    max_keepalive: int = 300
    persistent_client_expiration: str = "14d"
    # None: the log goes to stderr (the journal under systemd).
    log_file: Path | None = None
    # Mosquitto started as root drops privileges to this user right after reading this file, before
    # it opens anything else (tests run it as themselves).
    user: str = "mosquitto"
    # Where Mosquitto writes its pid (after dropping privileges): how provisioning knows it runs.
    pid_file: Path | None = None
    # Ingest's own listener: a Unix domain socket (``listener 0 PATH``), so the ingest workers
    # never queue behind agents' TLS handshakes in the TCP listener's accept queue (a reconnect
    # storm) and their traffic skips TLS. Local only; Mosquitto 2.0.11 creates it after dropping
    # privileges, mode 0770 (umask 0007), owned by ``user`` and its primary group: only that user
    # and members of its group can connect, and every connection still needs an account (the
    # same accounts and grants as on the TLS listener, anonymous access off). None: no such listener.
    ingest_socket: Path | None = None

    def __post_init__(self) -> None:
        if not 0 < self.port < 65536:
            raise ValueError("port out of range")
        cert_users = self.tls is not None and self.tls.use_identity_as_username
        if not (cert_users or self.allow_anonymous or self.dynsec is not None):
            raise ValueError(
                "without TLS client certificates, anonymous access or the dynamic security plugin is needed"
            )
        if self.max_inflight_messages < 1:
            raise ValueError("max_inflight_messages must be set (0 would mean unlimited)")
        if self.autosave_interval < 1:
            raise ValueError("autosave_interval must be at least 1 s (0 would save only at shutdown)")
        if self.ingest_socket is not None:
            check_socket_path(self.ingest_socket)


def check_socket_path(path: Path) -> Path:
    """``path`` as a Unix socket listener: absolute, one word, at most :data:`UNIX_PATH_MAX` bytes.

    Refused with :class:`BrokerConfigError` (Mosquitto would cut a longer path or read a path with
    a space as two words)."""
    raw = os.fsencode(path)
    if not path.is_absolute():
        raise BrokerConfigError("the ingest socket path must be absolute (Mosquitto would resolve it from its cwd)")
    if any(c in raw for c in b"\n\r\0 \t"):
        raise BrokerConfigError("the ingest socket path must not contain whitespace or NUL (one configuration word)")
    if len(raw) > UNIX_PATH_MAX:
        raise BrokerConfigError(
            f"the ingest socket path is {len(raw)} bytes, the limit of a Unix socket path is {UNIX_PATH_MAX}: "
            "render into a shorter directory or turn the ingest socket off (broker_ingest_socket = false)"
        )
    return path


def _tls_block(tls: TlsFiles | None) -> str:
    if tls is None:
        return "# plain TCP listener (tests only; production listeners use TLS)"
    lines = [
        "# TLS: our CA, TLS 1.2 minimum, ECDHE + AEAD cipher suites only, no plaintext listener.",
        f"cafile {tls.cafile}",
        f"certfile {tls.certfile}",
        f"keyfile {tls.keyfile}",
        f"tls_version {tls.tls_version}",
        f"ciphers {tls.ciphers}",
        f"ciphers_tls1.3 {tls.ciphers_tls13}",
        f"require_certificate {str(tls.require_certificate).lower()}",
        f"use_identity_as_username {str(tls.use_identity_as_username).lower()}",
    ]
    return "\n".join(lines)


def _ingest_listener(path: Path | None) -> str:
    if path is None:
        return "# no ingest listener of its own (ingest connects over TLS like the agents)"
    return "\n".join(
        [
            "# Ingest's own listener: a Unix socket, so its workers never wait in the accept queue of the TLS",
            "# listener behind agents' handshakes (a reconnect storm). Local only; Mosquitto creates it mode 0770",
            "# as the user it runs as: that user and its group may connect, and every client still logs in with",
            "# an account and its grants (dynamic security, anonymous access off: the settings above are global).",
            f"listener 0 {path}",
            "protocol mqtt",
        ]
    )


def _auth_block(dynsec: DynsecFiles | None) -> str:
    if dynsec is None:
        return "# no access control plugin (anonymous test broker)"
    return "\n".join(
        [
            "# Accounts, client-id bindings and grants: the dynamic security plugin (broker_config/accounts.py).",
            "# It checks every SUBSCRIBE filter (shared-subscription prefix included) when it arrives;",
            "# nothing is allowed by default.",
            f"plugin {dynsec.plugin}",
            f"plugin_opt_config_file {dynsec.config_file}",
        ]
    )


def render_mosquitto(spec: MosquittoSpec) -> str:
    template = Template(resources.files("broker_config").joinpath("templates/mosquitto.conf.tmpl").read_text())
    return template.substitute(
        allow_anonymous=str(spec.allow_anonymous).lower(),
        auth_block=_auth_block(spec.dynsec),
        persistence=str(spec.persistence).lower(),
        data_dir=spec.data_dir,
        autosave_interval=spec.autosave_interval,
        max_packet_size=spec.max_packet_size,
        max_inflight_messages=spec.max_inflight_messages,
        max_queued_messages=spec.max_queued_messages,
        max_keepalive=spec.max_keepalive,
        persistent_client_expiration=spec.persistent_client_expiration,
        log_line=f"log_dest file {spec.log_file}" if spec.log_file else "log_dest stderr",
        port=spec.port,
        bind_address=spec.bind_address,
        tls_block=_tls_block(spec.tls),
        ingest_listener=_ingest_listener(spec.ingest_socket),
        user=spec.user,
        pid_line=f"pid_file {spec.pid_file}" if spec.pid_file else "# no pid file",
    )


def find_mosquitto() -> str | None:
    """The ``mosquitto`` executable: on PATH, or where Debian puts it (sbin is not on a user's PATH)."""
    return shutil.which("mosquitto") or next(
        (p for p in ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto") if os.access(p, os.X_OK)), None
    )


def find_dynsec_plugin() -> Path | None:
    """Mosquitto's dynamic security plugin where distributions install it (Debian: the multiarch lib dir)."""
    patterns = (
        f"/usr/lib/*/{PLUGIN_NAME}",
        f"/usr/lib/{PLUGIN_NAME}",
        f"/usr/lib64/{PLUGIN_NAME}",
        f"/usr/local/lib/{PLUGIN_NAME}",
        f"/usr/lib/mosquitto/{PLUGIN_NAME}",
    )
    for pattern in patterns:
        for found in sorted(glob.glob(pattern)):
            if os.path.isfile(found):
                return Path(found)
    return None


def write_mosquitto(spec: MosquittoSpec, out_dir: Path) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    spec.data_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / CONF_NAME
    path.write_text(render_mosquitto(spec))
    path.chmod(0o640)
    return path

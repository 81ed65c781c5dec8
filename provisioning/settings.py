"""Provisioning's settings: what the composition root builds once (``vigil agents``, ``vigil broker``,
and the clinician API's fleet routes) and passes to every function of this package.

Every field reads ``VIGIL_<NAME>`` or the TOML file's ``<name>`` (``rpm_core.settings``); the
comment above each field is its documentation in docs/configuration.md.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from rpm_core.settings import VigilSettings
from store.config import DEFAULT_DATABASE_URL

__all__ = ["ProvisioningSettings"]


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
    # Render a second listener for the ingest workers only: a Unix socket at {broker_dir}/run/ingest.sock
    # (give ingest mqtt_socket = that path). Ingest then never waits behind agents' TLS handshakes in the
    # agents' accept queue (after a broker restart) and its traffic skips TLS. Mosquitto creates it mode 0770
    # as broker_user: run ingest as that user or in its primary group. Accounts and grants are the same as on
    # the TLS listener, anonymous access stays off. false: no socket (ingest on another host uses TLS).
    broker_ingest_socket: bool = True
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

"""Settings of ``vigil ingest`` (environment ``VIGIL_*`` over the TOML file, see rpm_core.settings)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from rpm_core.settings import VigilSettings
from rpm_core.topics import INGEST_GROUP
from store.config import DEFAULT_DATABASE_URL

__all__ = ["IngestSettings"]


class IngestSettings(VigilSettings):
    # PostgreSQL URL of the Vigil database; the role's synchronous_commit must not be off or local
    # (ingest acknowledges after COMMIT and refuses to start otherwise).
    database_url: str = DEFAULT_DATABASE_URL
    # Server key generations (rpm_core.keystore); every generation on disk is accepted.
    key_dir: Path = Path(".vigil/keys")

    # The broker's host name: TLS checks it, so it must be one of the broker certificate's names
    # (broker_server_names).
    mqtt_host: str = "localhost"
    # The broker's TLS port (broker_port of `vigil broker render`).
    mqtt_port: int = Field(default=8883, gt=0, lt=65536)
    # The CA that signed the broker certificate; None = {key_dir}/ca/ca.pem. TLS is not optional over TCP.
    mqtt_ca_file: Path | None = None
    # The broker's Unix socket listener for ingest ({broker_dir}/run/ingest.sock, rendered by `vigil broker
    # render` unless broker_ingest_socket = false); when set, ingest connects there instead of TLS to
    # mqtt_host:mqtt_port (same account and grants; the socket is local, mode 0770: run ingest as the broker's
    # user or in its group). None (the default): TLS to mqtt_host:mqtt_port, for a broker on another host.
    mqtt_socket: Path | None = None
    # The broker account; None = the same as mqtt_client_id. `vigil broker render` creates one account per
    # worker, vigil-ingest-1 .. vigil-ingest-N (broker_ingest_workers), each usable with its own client id only.
    mqtt_username: str | None = None
    # None = {key_dir}/mqtt/{username}.password (written by `vigil broker render`).
    mqtt_password_file: Path | None = None
    # Unique per worker (`vigil ingest --client-id`): the broker keeps this worker's persistent session under
    # it, and only the account bound to it may connect with it (vigil-ingest-1 .. vigil-ingest-N).
    mqtt_client_id: str = Field(default="vigil-ingest-1", min_length=1, max_length=64)
    # Seconds the broker keeps this worker's session (subscription, unacknowledged messages) while it is
    # away: longer than any stop you want to ride out without the broker dropping its queue (default 7 days).
    mqtt_session_expiry_s: int = Field(default=7 * 24 * 3600, ge=60)
    # How many unacknowledged messages the broker may send us (MQTT 5 Receive Maximum). Acks wait
    # for COMMIT, so this bounds the batch; keep batch_max_messages below it.
    mqtt_receive_maximum: int = Field(default=2000, ge=1, le=65535)
    # MQTT keepalive in seconds: ping interval when idle; the broker drops a connection silent 1.5 times as long.
    mqtt_keepalive_s: int = Field(default=30, ge=5, le=600)
    # MQTT 5 shared-subscription group ($share/GROUP/...): workers in one group split the messages. Keep it
    # the same on every worker; the broker ACL must allow it (the rendered ones grant "ingest").
    shared_group: str = INGEST_GROUP

    # Most messages per database transaction: a batch is written once this many have arrived or
    # batch_max_wait_ms after its first one. Keep it below mqtt_receive_maximum.
    batch_max_messages: int = Field(default=500, ge=1, le=65535)
    # Milliseconds a batch waits after its first message for more: latency versus fewer, larger commits.
    batch_max_wait_ms: int = Field(default=50, ge=1, le=10_000)
    # Database outage: seconds before the first retry of the uncommitted batch, doubling per failed attempt
    # (deadlocks and serialization failures retry after this too).
    db_retry_base_s: float = Field(default=0.2, gt=0)
    # Database outage: the longest wait in seconds between retries; must be >= db_retry_base_s.
    db_retry_cap_s: float = Field(default=10.0, gt=0)

    # Bytes of a dead letter's payload that are stored (a prefix); the whole payload's length and SHA-256 are
    # always stored, so an operator can still match it (docs/ingest.md, "Dead letters cannot fill the disk").
    dead_letter_payload_max_bytes: int = Field(default=8192, ge=0, le=1024 * 1024)
    # Dead letters one agent may cause in a burst that are stored; refilled at dead_letter_per_minute.
    dead_letter_burst: int = Field(default=20, ge=0)
    # Dead letters per minute one agent may cause after its burst that are stored (per worker). Past it a dead
    # letter is still acknowledged and counted (metric, hourly summary row, alarm line), its payload not stored.
    dead_letter_per_minute: float = Field(default=6.0, ge=0)
    # Dead letters (and their hourly summaries) older than this many days are deleted by ingest itself.
    dead_letter_retention_days: float = Field(default=30.0, gt=0)
    # Seconds between two dead-letter retention runs (one runs when the worker starts).
    dead_letter_prune_interval_s: float = Field(default=3600.0, gt=0)

    # A readings envelope whose sent_at is more than this many seconds before the server's clock (an offline
    # backlog, a replay) is stored with its readings flagged ingest:sent_long_ago, and counted; default 7 days.
    freshness_max_age_s: float = Field(default=7 * 24 * 3600.0, gt=0)
    # A readings envelope whose sent_at is more than this many seconds after the server's clock (the Pi's clock
    # runs ahead) is stored with its readings flagged ingest:sent_in_future, and counted.
    freshness_max_ahead_s: float = Field(default=300.0, gt=0)
    # A readings envelope whose sent_at is more than this many seconds before the server's clock (but less than
    # freshness_max_age_s) is stored with its readings flagged ingest:sent_late, and counted: agents seal every
    # envelope when they send it, so the Pi's clock is behind, or the envelope waited in the broker while ingest
    # was away.
    freshness_max_behind_s: float = Field(default=3600.0, gt=0)
    # At most one alarm line per agent and kind (dead-letter flood, stale envelopes) per this many seconds.
    alarm_log_interval_s: float = Field(default=300.0, gt=0)

    # Prometheus exposition; 0 disables the HTTP endpoint.
    metrics_port: int = Field(default=9464, ge=0, lt=65536)
    # Address the metrics endpoint listens on; 0.0.0.0 lets a scraper on another host reach it.
    metrics_bind: str = "127.0.0.1"

    def ca_file(self) -> Path:
        return self.mqtt_ca_file or self.key_dir / "ca" / "ca.pem"

    def username(self) -> str:
        return self.mqtt_username or self.mqtt_client_id

    def password_file(self) -> Path:
        return self.mqtt_password_file or self.key_dir / "mqtt" / f"{self.username()}.password"

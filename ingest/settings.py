"""Settings of ``vigil ingest`` (environment ``VIGIL_*`` over the TOML file, see rpm_core.settings)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from rpm_core.settings import VigilSettings
from rpm_core.topics import INGEST_GROUP
from store.config import DEFAULT_DATABASE_URL

__all__ = ["IngestSettings"]


class IngestSettings(VigilSettings):
    database_url: str = DEFAULT_DATABASE_URL
    # Server key generations (rpm_core.keystore); every generation on disk is accepted.
    key_dir: Path = Path(".vigil/keys")

    mqtt_host: str = "localhost"
    mqtt_port: int = Field(default=8883, gt=0, lt=65536)
    # The CA that signed the broker certificate; None = {key_dir}/ca/ca.pem. TLS is not optional.
    mqtt_ca_file: Path | None = None
    mqtt_username: str = "vigil-ingest"
    # None = {key_dir}/mqtt/{mqtt_username}.password (written by `vigil broker render`).
    mqtt_password_file: Path | None = None
    # Unique per worker: the broker keeps this worker's persistent session under it.
    mqtt_client_id: str = Field(default="vigil-ingest-1", min_length=1, max_length=64)
    mqtt_session_expiry_s: int = Field(default=7 * 24 * 3600, ge=60)
    # How many unacknowledged messages the broker may send us (MQTT 5 Receive Maximum). Acks wait
    # for COMMIT, so this bounds the batch; keep batch_max_messages below it.
    mqtt_receive_maximum: int = Field(default=2000, ge=1, le=65535)
    mqtt_keepalive_s: int = Field(default=30, ge=5, le=600)
    shared_group: str = INGEST_GROUP

    batch_max_messages: int = Field(default=500, ge=1, le=65535)
    batch_max_wait_ms: int = Field(default=50, ge=1, le=10_000)
    db_retry_base_s: float = Field(default=0.2, gt=0)
    db_retry_cap_s: float = Field(default=10.0, gt=0)

    # Prometheus exposition; 0 disables the HTTP endpoint.
    metrics_port: int = Field(default=9464, ge=0, lt=65536)
    metrics_bind: str = "127.0.0.1"

    def ca_file(self) -> Path:
        return self.mqtt_ca_file or self.key_dir / "ca" / "ca.pem"

    def password_file(self) -> Path:
        return self.mqtt_password_file or self.key_dir / "mqtt" / f"{self.mqtt_username}.password"

"""The agent's settings: ``VIGIL_*`` environment over the TOML file ``vigil edge enroll`` writes.

Built once by the command (:func:`load_edge_settings`) and passed down; nothing here reads files
or the environment at import time. Every key is documented in docs/edge-agent.md (config reference).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Final, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from rpm_core.envelope import MAX_READINGS
from rpm_core.ids import AgentId, OrgId, agent_id, org_id
from rpm_core.settings import VigilSettings, load_settings

__all__ = [
    "CONFIG_NAME",
    "DEFAULT_CONFIG_DIR",
    "DEFAULT_STATE_DIR",
    "PROFILE_NAMES",
    "EdgeSettings",
    "PairedDevice",
    "ProfileName",
    "load_edge_settings",
]

DEFAULT_CONFIG_DIR: Final = Path("/etc/vigil/edge")
DEFAULT_STATE_DIR: Final = Path("/var/lib/vigil-edge")
CONFIG_NAME: Final = "agent.toml"

ProfileName = Literal["heart_rate", "blood_pressure", "thermometer", "pulse_oximeter", "weight_scale", "glucose"]
PROFILE_NAMES: Final[tuple[ProfileName, ...]] = (
    "heart_rate",
    "blood_pressure",
    "thermometer",
    "pulse_oximeter",
    "weight_scale",
    "glucose",
)
_ADDRESS: Final = re.compile(r"[0-9A-F]{2}(:[0-9A-F]{2}){5}")


class PairedDevice(BaseModel):
    """One entry of the allow-list: the agent connects to nothing else."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    address: str
    profile: ProfileName
    name: Annotated[str, Field(max_length=64)] | None = None

    @field_validator("address")
    @classmethod
    def _mac(cls, v: str) -> str:
        v = v.strip().upper()
        if _ADDRESS.fullmatch(v) is None:
            raise ValueError("a Bluetooth address such as E0:00:00:00:00:01")
        return v


class EdgeSettings(VigilSettings):
    # -- identity, written by `vigil edge enroll` -------------------------------------------
    org: str | None = None
    agent_id: str | None = None
    enrollment_dir: Path = DEFAULT_CONFIG_DIR
    state_dir: Path = DEFAULT_STATE_DIR

    # -- broker ------------------------------------------------------------------------------
    broker_host: str | None = None
    broker_port: Annotated[int, Field(gt=0, lt=65536)] = 8883
    broker_server_name: str | None = None
    mqtt_keepalive_s: Annotated[int, Field(ge=5, le=600)] = 30
    mqtt_backoff_cap_s: Annotated[float, Field(gt=0, le=3600)] = 60.0

    # -- uplink ------------------------------------------------------------------------------
    batch_max_readings: Annotated[int, Field(ge=1, le=MAX_READINGS)] = 20
    batch_max_age_s: Annotated[float, Field(ge=0, le=300)] = 2.0
    max_inflight_envelopes: Annotated[int, Field(ge=1, le=100)] = 8
    receipt_timeout_s: Annotated[float, Field(gt=0)] = 60.0
    status_interval_s: Annotated[float, Field(gt=0)] = 60.0
    registration_retry_s: Annotated[float, Field(gt=0)] = 30.0

    # -- outbox ------------------------------------------------------------------------------
    outbox_max_readings: Annotated[int, Field(ge=100)] = 3_000_000

    # -- devices -----------------------------------------------------------------------------
    devices: tuple[PairedDevice, ...] = ()
    time_zone: str = "UTC"
    clock_skew_threshold_s: Annotated[float, Field(gt=0)] = 120.0
    ble_backoff_cap_s: Annotated[float, Field(gt=0, le=3600)] = 60.0
    racp_poll_interval_s: Annotated[float, Field(gt=0)] = 300.0
    battery_poll_interval_s: Annotated[float, Field(gt=0)] = 1800.0
    # "bluez" in production; "emulated" for tests and the demo: with emulated_hci (a
    # DeviceProcess's "tcp-client:HOST:PORT") the devices live in another process, without it
    # the agent runs the demo devices of edge_agent.demo in-process.
    ble_backend: Literal["bluez", "emulated"] = "bluez"
    emulated_hci: str | None = None
    demo_speed: Annotated[float, Field(gt=0, le=1000)] = 1.0
    demo_glucose_records: Annotated[int, Field(ge=0, le=1000)] = 12
    # `vigil demo` gives each patient's built-in devices their own baseline (seed), days of stored
    # history to upload on first start, and optionally a deterioration starting this many seconds in.
    demo_seed: int = 7
    demo_history_days: Annotated[int, Field(ge=0, le=90)] = 0
    demo_deteriorate_after_s: Annotated[float | None, Field(ge=0)] = None
    demo_deteriorate_over_s: Annotated[float, Field(gt=0)] = 60.0

    log_level: Literal["debug", "info", "warning", "error"] = "info"

    @field_validator("time_zone")
    @classmethod
    def _zone(cls, v: str) -> str:
        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError("an IANA time zone such as Europe/Berlin") from exc
        return v

    @field_validator("org")
    @classmethod
    def _org(cls, v: str | None) -> str | None:
        return None if v is None else org_id(v)

    @field_validator("agent_id")
    @classmethod
    def _agent(cls, v: str | None) -> str | None:
        return None if v is None else agent_id(v)

    @model_validator(mode="after")
    def _unique_devices(self) -> EdgeSettings:
        addresses = [d.address for d in self.devices]
        if len(addresses) != len(set(addresses)):
            raise ValueError("a device address appears twice in devices")
        return self

    # -- derived -----------------------------------------------------------------------------
    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.time_zone)

    @property
    def outbox_path(self) -> Path:
        return self.state_dir / "outbox.db"

    @property
    def enrolled(self) -> bool:
        return None not in (self.org, self.agent_id, self.broker_host, self.broker_server_name)

    @property
    def org_id(self) -> OrgId:
        return org_id(self.org or "")

    @property
    def agent(self) -> AgentId:
        return agent_id(self.agent_id or "")


def load_edge_settings(config_file: Path | None = None, **overrides: object) -> EdgeSettings:
    """Environment and TOML; raises :class:`rpm_core.errors.ConfigError` naming bad fields."""
    return load_settings(EdgeSettings, config_file=config_file, **overrides)

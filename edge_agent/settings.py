"""The agent's settings: ``VIGIL_*`` environment over the TOML file ``vigil edge enroll`` writes.

Built once by the command (:func:`load_edge_settings`) and passed down; nothing here reads files
or the environment at import time. Every key is documented in docs/edge-agent.md (config reference).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Final, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from rpm_core.checks import fail, known_fields, one_of, optional_text, text
from rpm_core.envelope import MAX_READINGS
from rpm_core.errors import ConfigError
from rpm_core.ids import AgentId, OrgId, agent_id, org_id
from rpm_core.plainsettings import check_settings, load_plain_settings, setting

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


@dataclass(frozen=True, slots=True)
class PairedDevice:
    """One entry of the allow-list: the agent connects to nothing else.

    The address is kept upper case; a bad field raises :class:`~rpm_core.errors.InvalidField`.
    """

    address: str
    profile: ProfileName
    name: str | None = None

    def __post_init__(self) -> None:
        self._check("")

    def _check(self, at: str) -> None:
        address = text(at + "address", self.address).strip().upper()
        if _ADDRESS.fullmatch(address) is None:
            fail(at + "address", "value_error", "must be a Bluetooth address such as E0:00:00:00:00:01")
        object.__setattr__(self, "address", address)
        one_of(at + "profile", self.profile, PROFILE_NAMES)
        optional_text(at + "name", self.name, max_length=64)

    @classmethod
    def from_doc(cls, doc: object, *, at: str = "") -> PairedDevice:
        """From a ``[[devices]]`` table (or its JSON): unknown keys refused, fields named from ``at``."""
        values = known_fields(at.rstrip("."), doc, _DEVICE_FIELDS)
        for name in ("address", "profile"):
            if name not in values:
                fail(at + name, "missing", "is required")
        device = object.__new__(cls)
        for f in fields(cls):
            object.__setattr__(device, f.name, values.get(f.name, f.default))
        device._check(at)
        return device

    def to_doc(self) -> dict[str, Any]:
        """The table as ``agent.toml`` and ``vigil edge status`` write it (name omitted when None)."""
        doc: dict[str, Any] = {"address": self.address, "profile": self.profile}
        if self.name is not None:
            doc["name"] = self.name
        return doc


_DEVICE_FIELDS: Final = frozenset(("address", "profile", "name"))


def _zone(v: str) -> str:
    try:
        ZoneInfo(v)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError("an IANA time zone such as Europe/Berlin") from exc
    return v


def _org(v: str) -> str:
    return org_id(v)


def _agent(v: str) -> str:
    return agent_id(v)


@dataclass(frozen=True, slots=True)
class EdgeSettings:
    """The agent's settings (a plain dataclass: the agent process loads no pydantic). Build it with
    :func:`load_edge_settings`; a bad value raises :class:`~rpm_core.errors.ConfigError`."""

    # -- identity, written by `vigil edge enroll` -------------------------------------------
    # The organisation id from the enrollment bundle (part of every topic the agent uses).
    org: str | None = setting(None, check=_org)
    # This agent's id from the bundle: its MQTT username and client id, and part of its topics.
    agent_id: str | None = setting(None, check=_agent)
    # Where `vigil edge enroll` wrote the identity: CA, credentials, server keys, the agent's private keys
    # (keys/) and agent.toml.
    enrollment_dir: Path = DEFAULT_CONFIG_DIR
    # The agent's writable state: the encrypted outbox (outbox.db) and the demo devices' memory. It must
    # survive reboots: readings wait here until the server's receipt.
    state_dir: Path = DEFAULT_STATE_DIR

    # -- broker ------------------------------------------------------------------------------
    # Host name or address the agent connects to (from the bundle); TLS checks broker_server_name instead.
    broker_host: str | None = None
    # The broker's TLS port (from the bundle).
    broker_port: int = setting(8883, gt=0, lt=65536)
    # The name the broker's certificate must carry (from the bundle), whatever address broker_host is.
    broker_server_name: str | None = None
    # MQTT keepalive in seconds: a connection silent this long is pinged and one silent 1.5 times as long is
    # given up (the agent runs paho's keepalive at 3/4 of it); the broker then publishes the last will.
    mqtt_keepalive_s: int = setting(30, ge=5, le=600)
    # Longest wait in seconds between broker reconnect attempts (exponential backoff from 0.5 s).
    mqtt_backoff_cap_s: float = setting(60.0, gt=0, le=3600)

    # -- uplink ------------------------------------------------------------------------------
    # Most readings per envelope (at most rpm_core.envelope.MAX_READINGS); a full batch goes at once.
    batch_max_readings: int = setting(20, ge=1, le=MAX_READINGS)
    # A partial batch waits until its oldest reading is this many seconds old: latency versus fewer
    # messages; 0 sends at once.
    batch_max_age_s: float = setting(2.0, ge=0, le=300)
    # Most envelopes sent and not yet receipted at a time; further readings wait in the outbox.
    max_inflight_envelopes: int = setting(8, ge=1, le=100)
    # No receipt for the oldest envelope in flight for this many seconds: send every unreceipted reading
    # again from the outbox (the server drops duplicates).
    receipt_timeout_s: float = setting(60.0, gt=0)
    # The broker answered a readings envelope with PUBACK 0x10 (no subscriber: ingest's shared
    # subscription is gone, as after a Mosquitto 2.0.11 restart): send the unreceipted readings again
    # after this many seconds instead of waiting receipt_timeout_s; doubles while it repeats, at most
    # receipt_timeout_s.
    no_subscriber_retry_s: float = setting(2.0, gt=0)
    # Seconds between periodic status messages; a status also goes out on connect and (at most once a
    # second) on any change of devices or alarms.
    status_interval_s: float = setting(60.0, gt=0)
    # Until the server accepts the registration, send it again this often (seconds) and on every
    # connect; readings wait in the outbox meanwhile.
    registration_retry_s: float = setting(30.0, gt=0)

    # -- outbox ------------------------------------------------------------------------------
    # Most readings the outbox holds; beyond it the oldest are dropped and reported as a gap (the
    # outbox_overflow alarm). The default is about 8.7 days at 4 readings/s, about 175 MB.
    outbox_max_readings: int = setting(3_000_000, ge=100)

    # -- devices -----------------------------------------------------------------------------
    # The allow-list (`vigil edge pair` adds to it): [[devices]] tables with address, profile and an
    # optional name. The agent connects to nothing else.
    devices: tuple[PairedDevice, ...] = ()
    # IANA zone the devices' clocks keep (their timestamps carry no zone); `vigil edge enroll` writes
    # this machine's zone, or --time-zone.
    time_zone: str = setting("UTC", check=_zone)
    # A device clock off by more than this many seconds is wrong: its measured times are corrected by
    # the skew, the readings flagged clock_skew and the clock_skew alarm raised.
    clock_skew_threshold_s: float = setting(120.0, gt=0)
    # Longest wait in seconds after a failed device connection before listening for that device again
    # (exponential backoff from 0.5 s).
    ble_backoff_cap_s: float = setting(60.0, gt=0, le=3600)
    # While a glucose meter stays connected, ask it for new stored records (RACP) this often (seconds).
    racp_poll_interval_s: float = setting(300.0, gt=0)
    # While a device stays connected, read its Battery Level again this often (seconds).
    battery_poll_interval_s: float = setting(1800.0, gt=0)
    # "bluez" in production; "emulated" for tests and the demo, with the devices emulated_hci names or,
    # without it, the built-in demo devices of edge_agent.emulation.demo.
    ble_backend: Literal["bluez", "emulated"] = "bluez"
    # With ble_backend "emulated": a DeviceProcess's "tcp-client:HOST:PORT", whose devices live in another
    # process; None runs the built-in demo devices in-process (paired implicitly when devices is empty).
    emulated_hci: str | None = None
    # Built-in demo devices: time compression; every device interval and demo_deteriorate_* time is
    # divided by it.
    demo_speed: float = setting(1.0, gt=0, le=1000)
    # Built-in demo glucose meter: stored records it holds at first start (ignored with demo_history_days).
    demo_glucose_records: int = setting(12, ge=0, le=1000)
    # `vigil demo` gives each patient's built-in devices their own baseline: this seed picks the patient's
    # heart rate, SpO2, blood pressure, weight, temperature and glucose, and the noise.
    demo_seed: int = 7
    # Days of stored history (two blood pressures, one weight, four glucose records a day) the built-in
    # cuff, scale and glucose meter hand over on first connection; 0: none.
    demo_history_days: int = setting(0, ge=0, le=90)
    # Seconds after the built-in devices start when the patient begins to deteriorate (SpO2 towards
    # 86 %, heart rate towards 122 /min); None: never.
    demo_deteriorate_after_s: float | None = setting(None, ge=0)
    # Seconds the deterioration takes to reach those targets (linearly, in 5 s steps).
    demo_deteriorate_over_s: float = setting(60.0, gt=0)

    # Level of the agent's own loggers (libraries stay at warning); logs name devices by address, never
    # values. `vigil edge run --log-level` overrides it.
    log_level: Literal["debug", "info", "warning", "error"] = "info"

    def __post_init__(self) -> None:
        check_settings(self)
        addresses = [d.address for d in self.devices]
        if len(addresses) != len(set(addresses)):
            raise ConfigError("invalid settings: devices (value_error: a device address appears twice)")

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
    return load_plain_settings(EdgeSettings, config_file=config_file, **overrides)

"""The exception tree of the edge agent (everything outside the pure decoders in ``devices``).

::

    VigilError (rpm_core.errors)
    └── EdgeError                      .reason (stable snake_case code)
        ├── OutboxError                the durable outbox cannot be used
        │   ├── OutboxMissing          .path   no outbox: the agent was never enrolled here
        │   ├── OutboxSchemaTooNew     .found .supported   written by a newer agent
        │   ├── OutboxKeyMismatch      the outbox key does not open this outbox
        │   ├── OutboxCorrupt          .seq    a row fails authentication, or integrity_check fails
        │   ├── OutboxFull             the disk (or max_page_count) is full
        │   └── OutboxInUse            .path   another process (the running agent) has it open
        ├── DeviceError                a BLE device session failed            .address
        │   ├── DeviceUnreachable      connecting failed (not found, timeout, refused)
        │   ├── DeviceLinkLost         the link dropped or a GATT request failed mid-session
        │   └── ProfileMismatch        the device lacks the paired profile's service  .profile
        ├── AdapterUnavailable         the Bluetooth adapter cannot scan
        ├── BrokerError                the MQTT uplink failed
        │   ├── BrokerUnreachable      TCP or TLS failed                        .why
        │   ├── BrokerRefused          CONNACK refused                           .code
        │   └── BrokerDisconnected     the broker or the network ended the session .code
        │       └── SessionTakenOver   another client uses our client id   .inferred .cuts
        ├── EnrollmentError            a bundle that cannot be enrolled, or missing identity files .path
        └── InstallError               the installer could not do its work       .path

Foreign exceptions are translated where they enter (``BleakError`` and ``TimeoutError`` in
:mod:`edge_agent.ble`, ``sqlite3.Error`` in :mod:`edge_agent.outbox`, ``ssl``/``OSError`` and paho
reason codes in :mod:`edge_agent.mqtt`), always chained with ``from``.

Retry policy is a pure function of the error (:func:`rpm_core.backoff.backoff_delay`): errors that
usually clear at once say ``transient = True``; errors that will not clear by retrying soon (bad
credentials, a device without the paired service) carry ``retry_after_s``, which the policy caps.

Messages name devices by address and characteristics by UUID, never a measured value (PHI).
"""

from __future__ import annotations

from pathlib import Path

from rpm_core.errors import VigilError

__all__ = [
    "AdapterUnavailable",
    "BrokerDisconnected",
    "BrokerError",
    "BrokerRefused",
    "BrokerUnreachable",
    "DeviceError",
    "DeviceLinkLost",
    "DeviceUnreachable",
    "EdgeError",
    "EnrollmentError",
    "InstallError",
    "OutboxCorrupt",
    "OutboxError",
    "OutboxFull",
    "OutboxInUse",
    "OutboxKeyMismatch",
    "OutboxMissing",
    "OutboxSchemaTooNew",
    "ProfileMismatch",
    "SessionTakenOver",
]

# MQTT v5 reason codes the agent reacts to (MQTT 5.0 section 2.4).
_BAD_CREDENTIALS = 0x86
_NOT_AUTHORIZED = 0x87
_SESSION_TAKEN_OVER = 0x8E


class EdgeError(VigilError):
    reason = "edge"


# -- outbox -----------------------------------------------------------------------------------


class OutboxError(EdgeError):
    reason = "outbox"


class OutboxMissing(OutboxError):
    reason = "outbox_missing"

    def __init__(self, path: Path) -> None:
        super().__init__(f"no outbox at {path}: enroll this agent first (vigil edge enroll)")
        self.path = path


class OutboxSchemaTooNew(OutboxError):
    reason = "outbox_schema_too_new"

    def __init__(self, found: int, supported: int) -> None:
        super().__init__(f"outbox schema version {found} is newer than this agent's ({supported})")
        self.found = found
        self.supported = supported


class OutboxKeyMismatch(OutboxError):
    reason = "outbox_key_mismatch"

    def __init__(self) -> None:
        super().__init__("the outbox key does not open this outbox (keys replaced without re-enrolling?)")


class OutboxCorrupt(OutboxError):
    reason = "outbox_corrupt"

    def __init__(self, why: str, *, seq: int | None = None) -> None:
        super().__init__(f"outbox corrupt: {why}" + ("" if seq is None else f" (seq {seq})"))
        self.why = why
        self.seq = seq


class OutboxFull(OutboxError):
    reason = "disk_full"

    def __init__(self) -> None:
        super().__init__("the outbox's disk is full")


class OutboxInUse(OutboxError):
    reason = "outbox_in_use"

    def __init__(self, path: Path) -> None:
        super().__init__(f"{path} is in use by another process: stop the agent first (systemctl stop vigil-edge)")
        self.path = path


# -- BLE --------------------------------------------------------------------------------------


class DeviceError(EdgeError):
    reason = "device"
    transient = False

    def __init__(self, address: str, why: str) -> None:
        super().__init__(f"{address}: {why}")
        self.address = address
        self.why = why


class DeviceUnreachable(DeviceError):
    reason = "device_unreachable"


class DeviceLinkLost(DeviceError):
    """The link went down mid-session; the next advertisement usually brings it back at once."""

    reason = "device_link_lost"
    transient = True


class ProfileMismatch(DeviceError):
    reason = "profile_mismatch"
    retry_after_s = 300.0

    def __init__(self, address: str, profile: str) -> None:
        super().__init__(address, f"does not offer the {profile} service it was paired for")
        self.profile = profile


class AdapterUnavailable(EdgeError):
    reason = "ble_adapter_down"

    def __init__(self, why: str) -> None:
        super().__init__(f"Bluetooth adapter unavailable: {why}")
        self.why = why


# -- MQTT -------------------------------------------------------------------------------------


class BrokerError(EdgeError):
    reason = "broker"


class BrokerUnreachable(BrokerError):
    reason = "broker_unreachable"

    def __init__(self, why: str) -> None:
        super().__init__(f"broker unreachable: {why}")
        self.why = why


class BrokerRefused(BrokerError):
    """CONNACK with a failure reason code. Bad credentials do not heal by retrying quickly."""

    reason = "broker_refused"

    def __init__(self, code: int, name: str) -> None:
        super().__init__(f"broker refused the connection: 0x{code:02X} {name}")
        self.code = code
        self.name = name
        if code in (_BAD_CREDENTIALS, _NOT_AUTHORIZED):
            self.retry_after_s = 300.0


class BrokerDisconnected(BrokerError):
    """The session ended (network loss, broker shutdown, or another client took our id)."""

    reason = "broker_disconnected"

    def __init__(self, code: int, name: str) -> None:
        super().__init__(f"disconnected from the broker: 0x{code:02X} {name}")
        self.code = code
        self.name = name
        # A dropped connection usually comes straight back; a takeover means a twin agent runs.
        self.transient = code != _SESSION_TAKEN_OVER
        if code == _SESSION_TAKEN_OVER:
            self.retry_after_s = 60.0

    @property
    def taken_over(self) -> bool:
        return self.code == _SESSION_TAKEN_OVER


class SessionTakenOver(BrokerDisconnected):
    """Another client connected with our client id and the broker gave it our session.

    Said by the broker (DISCONNECT 0x8E, Mosquitto >= 2.0.18), or ``inferred`` from ``cuts``
    sessions in a row that the broker accepted and then closed within seconds without a reason
    (older brokers; :class:`rpm_core.takeover.TakeoverDetector`). Both mean a twin runs with this
    agent's identity, so retrying at once would only keep the two displacing each other.
    """

    reason = "client_id_takeover"

    def __init__(self, *, inferred: bool, cuts: int = 0) -> None:
        why = (
            f"inferred: {cuts} sessions closed by the broker right after it accepted them"
            if inferred
            else "said by the broker"
        )
        super().__init__(_SESSION_TAKEN_OVER, f"Session taken over ({why})")
        self.inferred = inferred
        self.cuts = cuts


# -- enrollment and installation --------------------------------------------------------------


class EnrollmentError(EdgeError):
    reason = "enrollment"

    def __init__(self, why: str, *, path: Path | None = None) -> None:
        super().__init__(why if path is None else f"{path}: {why}")
        self.why = why
        self.path = path


class InstallError(EdgeError):
    reason = "install"

    def __init__(self, why: str, *, path: Path | None = None) -> None:
        super().__init__(why if path is None else f"{path}: {why}")
        self.why = why
        self.path = path

"""Emulated BLE medical devices speaking real ATT/GATT, reachable through bleak.

bumble peripherals (:mod:`.peripheral`, :mod:`.profiles`) advertise and serve GATT on a virtual
radio (:mod:`.link`); the agent reaches them through the bleak backend in :mod:`.backend`, so its
code path is production's with a different ``backend=``. Tests and the demo only; never on a Pi.

Exceptions: bleak's own (:class:`bleak.exc.BleakError` and subclasses) on the central side;
:class:`.link.DeviceProcessError` when the cross-process device host refuses a request or dies.
"""

from edge_agent.emulation.backend import (
    BleakBackends,
    BumbleClient,
    BumbleDeviceDetails,
    BumbleScanner,
    EmulatedRadio,
)
from edge_agent.emulation.link import DeviceProcess, DeviceProcessError, VirtualAir
from edge_agent.emulation.peripheral import (
    CharacteristicSpec,
    DeviceInformation,
    EmulatedPeripheral,
    ServiceSpec,
    bleak_uuid,
)
from edge_agent.emulation.profiles import (
    PROFILES,
    GlucoseMeter,
    GlucoseRecord,
    RacpResponse,
    blood_pressure_cuff,
    glucose_meter,
    heart_rate_strap,
    pulse_oximeter,
    thermometer,
    weight_scale,
)

__all__ = [
    "PROFILES",
    "BleakBackends",
    "BumbleClient",
    "BumbleDeviceDetails",
    "BumbleScanner",
    "CharacteristicSpec",
    "DeviceInformation",
    "DeviceProcess",
    "DeviceProcessError",
    "EmulatedPeripheral",
    "EmulatedRadio",
    "GlucoseMeter",
    "GlucoseRecord",
    "RacpResponse",
    "ServiceSpec",
    "VirtualAir",
    "bleak_uuid",
    "blood_pressure_cuff",
    "glucose_meter",
    "heart_rate_strap",
    "pulse_oximeter",
    "thermometer",
    "weight_scale",
]

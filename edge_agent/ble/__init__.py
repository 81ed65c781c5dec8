"""BLE through bleak: the radio (backend choice), the profiles served, sessions and their supervisor."""

from edge_agent.ble.manager import DeviceManager
from edge_agent.ble.profiles import PROFILES, ProfileSpec, profile_for_services
from edge_agent.ble.radio import Radio, open_radio
from edge_agent.ble.session import CommitWindow, DeviceSession, SessionOptions

__all__ = [
    "PROFILES",
    "CommitWindow",
    "DeviceManager",
    "DeviceSession",
    "ProfileSpec",
    "Radio",
    "SessionOptions",
    "open_radio",
    "profile_for_services",
]

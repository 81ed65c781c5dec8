"""A patient's home for agent tests: emulated devices paired at known addresses, on the air of one
:class:`~edge_agent.emulation.VirtualAir`, and the public GATT vectors the tests make them send.

The vectors are decoded in docs/reference/ble-gatt.md; the comments give what each one reads.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Sequence

from edge_agent.ble import Radio
from edge_agent.emulation import EmulatedPeripheral, EmulatedRadio, VirtualAir
from edge_agent.settings import PairedDevice

HR_VECTOR = bytes.fromhex("1e5532002100")  # 85 bpm, contact; its 32 ms RR interval is implausible
HR_PLAIN = bytes.fromhex("064e")  # 78 bpm, contact
BP_A = bytes.fromhex("1e8a00580078000000041114293b3c00012700")  # 138/88 MAP 120 PR 60, year unknown
BP_B = bytes.fromhex("15bdf00b009ff03c001200")  # kPa 18.9/11/15.9, PR 60, loose cuff, no time stamp
SPOT = bytes.fromhex("0facf3bef5e8070b1d170839204022000066e3")  # 94 %, PR 147, 2024-11-29
CONTINUOUS = bytes.fromhex("1c5f005a0020000000" + "0057f0")  # 95 %, PR 90
TEMP_VECTOR = bytes.fromhex("06b00e00fedc070c050b321b04")  # 37.60 Cel, 2012-12-05 11:50:27, finger
SCALE_KG, SCALE_LB = bytes.fromhex("00b036"), bytes.fromhex("01543d")  # 70.0 kg, 157.00 lb
GLUCOSE_VECTOR = bytes.fromhex("1b0100e307021b0b0a1efbff1e00120501")  # seq 1; 30 kg/L: implausible

# Each profile's device name in the tests' homes.
NAMES = {
    "heart_rate": "HR",
    "pulse_oximeter": "SpO2",
    "blood_pressure": "BP",
    "weight_scale": "Scale",
    "thermometer": "Temp",
    "glucose": "Glucose",
}


def paired_devices(block: int, profiles: Sequence[str]) -> tuple[PairedDevice, ...]:
    """``profiles`` paired at ``E0:00:00:00:{block}:01``, ``:02`` … (a block per test module keeps
    homes apart), named as in :data:`NAMES`."""
    return tuple(
        PairedDevice(address=f"E0:00:00:00:{block:02d}:{i:02d}", profile=profile, name=NAMES[profile])
        for i, profile in enumerate(profiles, start=1)
    )


@contextlib.asynccontextmanager
async def on_the_air(air: VirtualAir, air_devices: Sequence[EmulatedPeripheral]) -> AsyncIterator[Radio]:
    """Start ``air_devices`` (made on ``air``) and open the agent's radio on that air; stop all after."""
    started: list[EmulatedPeripheral] = []
    central: EmulatedRadio | None = None
    try:
        for device in air_devices:
            await device.start()
            started.append(device)
        central = await EmulatedRadio.open(air)
        yield Radio(central.scanner_backend, central.client_backend)
    finally:
        if central is not None:
            await central.close()
        for device in started:
            await device.stop()

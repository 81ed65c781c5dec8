"""The demo's devices: each demo patient's six devices have addresses of their own.

A Bluetooth address names one device across the fleet (the server keeps one ``devices`` row per
address). With one set of addresses for every patient, each agent's status took the devices over
from the previous one and the demo's live view said "0 devices reported" for most agents.
"""

from __future__ import annotations

import pytest

from edge_agent.emulation.demo import DEMO_DEVICES, demo_devices
from edge_agent.settings import PairedDevice


def test_seed_zero_is_the_built_in_set() -> None:
    assert demo_devices(0) == DEMO_DEVICES


@pytest.mark.parametrize("seeds", [(1001, 1002, 1003, 1004, 1005), (0, 7, 255, 256, 65535)])
def test_every_seed_has_its_own_addresses(seeds: tuple[int, ...]) -> None:
    sets = [demo_devices(seed) for seed in seeds]
    addresses = [d.address for devices in sets for d in devices]
    assert len(addresses) == len(set(addresses)) == 6 * len(seeds)
    for devices in sets:  # the same six devices otherwise, and addresses the settings accept
        assert [(d.profile, d.name) for d in devices] == [(d.profile, d.name) for d in DEMO_DEVICES]
        assert [PairedDevice.from_doc(d.to_doc()) for d in devices] == list(devices)

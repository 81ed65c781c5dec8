"""Server key generations and the CA in key_dir."""

from __future__ import annotations

import pytest

from provisioning import keys
from provisioning.errors import ServerKeyError
from provisioning.settings import ProvisioningSettings
from rpm_core.clock import ManualClock


def test_init_rotate_list_retire(settings: ProvisioningSettings, clock: ManualClock) -> None:
    with pytest.raises(ServerKeyError):
        keys.list_keys(settings)
    assert keys.init_keys(settings, now=clock.now()) == 1
    ca = keys.ca_of(settings, now=clock.now()).cert_pem()
    assert keys.init_keys(settings, now=clock.now()) is None  # exists: nothing new, the CA kept
    assert keys.ca_of(settings, now=clock.now()).cert_pem() == ca
    assert keys.rotate_keys(settings) == 2
    listed = keys.list_keys(settings)
    assert [(g.generation, g.current) for g in listed] == [(1, False), (2, True)]
    assert listed[1].kid == keys.keyring(settings).current.kid
    with pytest.raises(ServerKeyError):
        keys.retire_keys(settings, keep=0)
    assert keys.retire_keys(settings, keep=1) == [1]
    assert [g.generation for g in keys.list_keys(settings)] == [2]

"""Edge settings: environment over TOML, validated once."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge_agent.settings import load_edge_settings
from rpm_core.errors import ConfigError


def test_environment_overrides_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "agent.toml"
    path.write_text('time_zone = "UTC"\nbatch_max_readings = 50\n')
    monkeypatch.setenv("VIGIL_BATCH_MAX_READINGS", "10")
    settings = load_edge_settings(path)
    assert (settings.batch_max_readings, settings.enrolled, settings.ble_backend) == (10, False, "bluez")


@pytest.mark.parametrize(
    "line",
    [
        'time_zone = "Mars/Olympus"',
        "batch_max_readings = 5000",
        'ble_backend = "usb"',
        'devices = [{address = "nope", profile = "heart_rate"}]',
        'devices = [{address = "E0:00:00:00:00:01", profile = "toaster"}]',
    ],
)
def test_bad_settings_are_refused(tmp_path: Path, line: str) -> None:
    path = tmp_path / "agent.toml"
    path.write_text(line + "\n")
    with pytest.raises(ConfigError):
        load_edge_settings(path)


def test_a_device_twice_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "agent.toml"
    entry = '[[devices]]\naddress = "E0:00:00:00:00:01"\nprofile = "heart_rate"\n'
    path.write_text(entry + entry)
    with pytest.raises(ConfigError):
        load_edge_settings(path)

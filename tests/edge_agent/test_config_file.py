"""The agent's TOML config: rendered subset reads back as settings; pairing extends the allow-list."""

from __future__ import annotations

from pathlib import Path

from edge_agent.config_file import add_device, read_config, write_config
from edge_agent.settings import PairedDevice, load_edge_settings


def test_written_config_loads_as_settings(tmp_path: Path) -> None:
    path = tmp_path / "agent.toml"
    values = {"org": "clinic-1", "agent_id": "agt-1", "broker_host": "mqtt.example", "broker_port": 8883,
              "broker_server_name": "mqtt.example", "state_dir": tmp_path / "state", "time_zone": "Europe/Berlin",
              "batch_max_age_s": 1.5, "name_with_quote": 'say "hi" \\ ü'}  # fmt: skip
    write_config(path, values, [PairedDevice(address="e0:00:00:00:00:01", profile="heart_rate", name="HR 1")])
    assert path.stat().st_mode & 0o777 == 0o640
    assert read_config(path)["name_with_quote"] == 'say "hi" \\ ü'
    settings = load_edge_settings(path)
    assert settings.enrolled
    assert (settings.agent, settings.batch_max_age_s, settings.state_dir) == ("agt-1", 1.5, tmp_path / "state")
    assert settings.devices == (PairedDevice(address="E0:00:00:00:00:01", profile="heart_rate", name="HR 1"),)


def test_add_device_keeps_everything_else_and_is_idempotent(tmp_path: Path) -> None:
    path = tmp_path / "agent.toml"
    write_config(path, {"org": "clinic-1", "time_zone": "UTC"}, [])
    cuff = PairedDevice(address="E0:00:00:00:00:03", profile="blood_pressure")
    assert add_device(path, cuff)
    assert not add_device(path, cuff)
    config = read_config(path)
    assert config["org"] == "clinic-1"
    assert config["devices"] == [{"address": "E0:00:00:00:00:03", "profile": "blood_pressure"}]

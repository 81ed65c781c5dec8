"""``vigil edge pair``: scan (through the emulated backend of a device process) and extend the allow-list."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from edge_agent.cli import app
from edge_agent.config_file import read_config, write_config
from vigil_testkit import procs

CHILD = "from edge_agent.emulation.link import run_device_process; run_device_process()"


@pytest.fixture
def device_process() -> Iterator[dict]:
    """Emulated devices in another process, as ``DeviceProcess`` runs them (blocking flavour)."""
    spec = {"devices": [{"profile": "blood_pressure", "name": "Cuff"}, {"profile": "glucose", "name": "Meter"}]}
    with procs.popen([sys.executable, "-c", CHILD], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True) as child:
        assert child.stdin is not None
        assert child.stdout is not None
        child.stdin.write(json.dumps(spec) + "\n")
        child.stdin.flush()
        try:
            yield json.loads(child.stdout.readline())
        finally:
            child.kill()


def test_pair_lists_health_devices_and_adds_the_chosen_one(tmp_path: Path, device_process: dict) -> None:
    config = tmp_path / "agent.toml"
    write_config(config, {"org": "clinic-1", "time_zone": "UTC"}, [])
    meter = device_process["addresses"]["Meter"]
    args = ["pair", "--config", str(config), "--seconds", "1", "--ble", "emulated"]
    result = CliRunner().invoke(app, [*args, "--emulated-hci", device_process["hci"], "--address", meter.lower()])
    assert result.exit_code == 0, result.output
    assert "blood_pressure" in result.stdout  # listed
    assert f"added {meter} (glucose)" in result.stdout
    assert read_config(config)["devices"] == [{"address": meter, "profile": "glucose", "name": "Meter"}]


def test_pair_refuses_an_address_it_did_not_see(tmp_path: Path, device_process: dict) -> None:
    config = tmp_path / "agent.toml"
    write_config(config, {"time_zone": "UTC"}, [])
    args = ["pair", "--config", str(config), "--seconds", "0.5", "--ble", "emulated"]
    result = CliRunner().invoke(app, [*args, "--emulated-hci", device_process["hci"], "--address", "E0:99:99:99:99:99"])
    assert result.exit_code == 1
    assert "not seen" in result.stderr
    assert "devices" not in read_config(config)

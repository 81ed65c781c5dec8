"""Edge settings: environment over TOML, validated once."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from edge_agent.settings import EdgeSettings, PairedDevice, load_edge_settings
from rpm_core.errors import ConfigError, InvalidField


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


# What a user sees for a bad agent.toml line: the same text pydantic-settings printed (checked against
# it before the settings became a plain dataclass), except where noted.
BAD_LINES = [
    ("broker_port = 0", "broker_port (greater_than)"),
    ("broker_port = 70000", "broker_port (less_than)"),
    ('broker_port = "x"', "broker_port (int_parsing)"),
    ("broker_port = 1.5", "broker_port (int_from_float)"),
    ("receipt_timeout_s = -1", "receipt_timeout_s (greater_than)"),
    ('receipt_timeout_s = "abc"', "receipt_timeout_s (float_parsing)"),
    ('time_zone = "Mars/Base"', "time_zone (value_error)"),
    ("time_zone = 5", "time_zone (string_type)"),
    ('org = "Bad Org"', "org (value_error)"),
    ("org = 5", "org (string_type)"),
    ('agent_id = "x/y"', "agent_id (value_error)"),
    ('ble_backend = "foo"', "ble_backend (literal_error)"),
    ('log_level = "trace"', "log_level (literal_error)"),
    ('devices = [{address = "zz", profile = "heart_rate"}]', "devices.0.address (value_error)"),
    ('devices = [{address = "E0:00:00:00:00:01", profile = "nope"}]', "devices.0.profile (literal_error)"),
    (
        'devices = [{address = "E0:00:00:00:00:01", profile = "heart_rate", extra = 1}]',
        "devices.0.extra (extra_forbidden)",
    ),
    (
        f'devices = [{{address = "E0:00:00:00:00:01", profile = "heart_rate", name = "{"n" * 65}"}}]',
        "devices.0.name (string_too_long)",
    ),
    ("devices = 5", "devices (tuple_type)"),
    ("devices = [5]", "devices.0 (model_type)"),
    ("demo_deteriorate_after_s = -1", "demo_deteriorate_after_s (greater_than_equal)"),
    ("state_dir = 5", "state_dir (path_type)"),
    ("emulated_hci = 5", "emulated_hci (string_type)"),
    ("demo_seed = 1.5", "demo_seed (int_from_float)"),
    ('broker_port = 0\nlog_level = "x"', "broker_port (greater_than), log_level (literal_error)"),
    # Stricter than pydantic, which took true as 1 and infinity where there is no upper bound:
    ("broker_port = true", "broker_port (int_type)"),
    ("receipt_timeout_s = true", "receipt_timeout_s (float_type)"),
    ("receipt_timeout_s = inf", "receipt_timeout_s (finite_number)"),
    ("mqtt_backoff_cap_s = nan", "mqtt_backoff_cap_s (finite_number)"),
    ('devices = [{profile = "heart_rate"}]', "devices.0.address (missing)"),
]


@pytest.mark.parametrize(("line", "message"), BAD_LINES)
def test_a_bad_file_names_each_setting_and_the_kind_of_error(tmp_path: Path, line: str, message: str) -> None:
    path = tmp_path / "agent.toml"
    path.write_text(line + "\n")
    with pytest.raises(ConfigError) as err:
        load_edge_settings(path)
    assert str(err.value) == f"invalid settings: {message}"
    assert "Bad Org" not in str(err.value)  # never the value


@pytest.mark.parametrize(
    ("line", "attribute", "value"),
    [
        ("broker_port = 8883.0", "broker_port", 8883),
        ('broker_port = "8883"', "broker_port", 8883),
        ("receipt_timeout_s = 5", "receipt_timeout_s", 5.0),
        ('enrollment_dir = "/srv/edge"', "enrollment_dir", Path("/srv/edge")),
        ("unknown_key = 1", "log_level", "info"),  # unknown keys are ignored, as before
        ('devices = [{address = "e0:00:00:00:00:01", profile = "glucose"}]', "devices",
         (PairedDevice(address="E0:00:00:00:00:01", profile="glucose"),)),
    ],
)  # fmt: skip
def test_file_values_are_converted_as_before(tmp_path: Path, line: str, attribute: str, value: object) -> None:
    path = tmp_path / "agent.toml"
    path.write_text(line + "\n")
    assert getattr(load_edge_settings(path), attribute) == value


@pytest.mark.parametrize(
    ("name", "text", "outcome"),
    [
        ("VIGIL_BROKER_PORT", "1234", 1234),
        ("vigil_broker_port", "1234", 1234),  # any case, as before
        ("VIGIL_BROKER_PORT", " 7 ", 7),
        ("VIGIL_BROKER_PORT", "1_000", 1000),
        ("VIGIL_MQTT_BACKOFF_CAP_S", " 5 ", 5.0),
        ("VIGIL_EMULATED_HCI", "", ""),
        ("VIGIL_STATE_DIR", "/srv/vigil-edge", Path("/srv/vigil-edge")),
        ("VIGIL_DEVICES", '[{"address":"E0:00:00:00:00:01","profile":"glucose"}]',
         (PairedDevice(address="E0:00:00:00:00:01", profile="glucose"),)),
        ("VIGIL_BROKER_PORT", "0", "invalid settings: broker_port (greater_than)"),
        ("VIGIL_BROKER_PORT", "x", "invalid settings: broker_port (int_parsing)"),
        ("VIGIL_DEMO_SEED", "1e3", "invalid settings: demo_seed (int_parsing)"),
        ("VIGIL_ORG", "", "invalid settings: org (value_error)"),
        ("VIGIL_DEMO_DETERIORATE_AFTER_S", "", "invalid settings: demo_deteriorate_after_s (float_parsing)"),
        ("VIGIL_LOG_LEVEL", "DEBUG", "invalid settings: log_level (literal_error)"),
        ("VIGIL_MQTT_BACKOFF_CAP_S", "inf", "invalid settings: mqtt_backoff_cap_s (finite_number)"),
        ("VIGIL_RECEIPT_TIMEOUT_S", "nan", "invalid settings: receipt_timeout_s (finite_number)"),
        ("VIGIL_DEVICES", "notjson", "cannot read settings: VIGIL_DEVICES is not JSON"),
        ("VIGIL_DEVICES", "[" * 100_000, "cannot read settings: VIGIL_DEVICES is not JSON"),
    ],
)  # fmt: skip
def test_environment_values(monkeypatch: pytest.MonkeyPatch, name: str, text: str, outcome: object) -> None:
    monkeypatch.setenv(name, text)
    attribute = name.lower().removeprefix("vigil_")
    if isinstance(outcome, str) and outcome.startswith(("invalid", "cannot")):
        with pytest.raises(ConfigError) as err:
            load_edge_settings(None)
        assert str(err.value) == outcome
    else:
        assert getattr(load_edge_settings(None), attribute) == outcome


def test_overrides_win_and_none_is_ignored(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "agent.toml"
    path.write_text('log_level = "warning"\n')
    monkeypatch.setenv("VIGIL_LOG_LEVEL", "error")
    assert load_edge_settings(path, log_level=None).log_level == "error"
    assert load_edge_settings(path, log_level="debug").log_level == "debug"
    with pytest.raises(ConfigError, match=r"log_level \(literal_error\)"):
        load_edge_settings(path, log_level="loud")


def test_defaults_and_derived_values() -> None:
    s = EdgeSettings()
    assert (s.broker_port, s.time_zone, s.devices, s.enrolled) == (8883, "UTC", (), False)
    assert s.outbox_path == s.state_dir / "outbox.db"
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.broker_port = 1  # type: ignore[misc]


def test_built_directly_or_replaced_it_is_checked_the_same() -> None:
    with pytest.raises(ConfigError, match=r"broker_port \(int_type\)"):
        EdgeSettings(broker_port="8883")  # type: ignore[arg-type]  # text only from a file or the environment
    with pytest.raises(ConfigError, match=r"mqtt_keepalive_s \(less_than_equal\)"):
        dataclasses.replace(EdgeSettings(), mqtt_keepalive_s=601)
    hr = PairedDevice(address="E0:00:00:00:00:01", profile="heart_rate")
    with pytest.raises(ConfigError, match="appears twice"):
        dataclasses.replace(EdgeSettings(), devices=(hr, hr))


@pytest.mark.parametrize(
    ("kwargs", "field", "code"),
    [
        ({"address": "E0:00:00:00:00:0G", "profile": "heart_rate"}, "address", "value_error"),
        ({"address": 5, "profile": "heart_rate"}, "address", "string_type"),
        ({"address": "E0:00:00:00:00:01", "profile": "toaster"}, "profile", "literal_error"),
        ({"address": "E0:00:00:00:00:01", "profile": "heart_rate", "name": "n" * 65}, "name", "string_too_long"),
        ({"address": "E0:00:00:00:00:01", "profile": "heart_rate", "name": 5}, "name", "string_type"),
    ],
)
def test_paired_device_fields(kwargs: dict[str, object], field: str, code: str) -> None:
    with pytest.raises(InvalidField) as err:
        PairedDevice(**kwargs)  # type: ignore[arg-type]
    assert (err.value.field, err.value.code) == (field, code)
    assert PairedDevice(address=" e0:00:00:00:00:01 ", profile="glucose").address == "E0:00:00:00:00:01"

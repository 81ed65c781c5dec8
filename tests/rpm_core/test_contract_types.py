"""The contract's plain dataclasses (statuses, the enrollment bundle, their checks): what pydantic
enforced before, field by field, and the same bytes on the wire."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import cbor2
import pytest

from rpm_core import checks
from rpm_core.enrollment import BrokerEndpoint, EnrollmentBundle, Secret, ServerKeyInfo, new_token
from rpm_core.errors import ConfigError, ContractError, InvalidField, InvalidIdentifier
from rpm_core.keys import ServerKey
from rpm_core.status import AgentStatus, DeviceStatus, _to_wire

T = datetime(2026, 3, 1, 8, 30, tzinfo=UTC)

# The CBOR of these statuses as the pydantic models wrote it (model_dump(mode="json"), canonical).
PYDANTIC_WIRE = {
    "minimal": (
        "ab617601636f726768636c696e69632d31656167656e74686167742d3030303166616c61726d7380666f6e6c696e65f46764"
        "657669636573806773656e745f617474323032362d30332d30315430383a33303a30305a6c6c6173745f7265636569707400"
        "6c6f7574626f785f6465707468006d6167656e745f76657273696f6e606d6f7574626f785f6f6c64657374f6"
    ),
    "full": (
        "ab617601636f726768636c696e69632d31656167656e74686167742d3030303166616c61726d7381696469736b5f66756c6c"
        "666f6e6c696e65f5676465766963657382ab646e616d656448522031656d6f64656c61586673657269616c6253316770726f"
        "66696c656a68656172745f72617465686669726d7761726563312e3069636f6e6e6563746564f5696465766963655f696471"
        "45303a30303a30303a30303a30303a3031696c6173745f7365656e74323032362d30332d30315430383a33303a30305a6b62"
        "6174746572795f70637418506c636c6f636b5f736b65775f73f9be006c6d616e7566616374757265726441434d45ab646e61"
        "6d65f6656d6f64656cf66673657269616cf66770726f66696c6567676c75636f7365686669726d77617265f669636f6e6e65"
        "63746564f4696465766963655f69647145303a30303a30303a30303a30303a3032696c6173745f7365656e781b323032362d"
        "30332d30315430383a33303a30302e3030313030305a6b626174746572795f706374f66c636c6f636b5f736b65775f73fb3f"
        "b999999999999a6c6d616e756661637475726572f66773656e745f6174781b323032362d30332d30315430383a33303a3030"
        "2e3132333435365a6c6c6173745f7265636569707418636c6f7574626f785f6465707468182a6d6167656e745f7665727369"
        "6f6e65312e322e336d6f7574626f785f6f6c64657374781b323032362d30322d32385432313a35393a35392e303030353030"
        "5a"
    ),
    "skew_int": (
        "ab617601636f7267616f656167656e74616166616c61726d7380666f6e6c696e65f5676465766963657381ab646e616d65f6"
        "656d6f64656cf66673657269616cf66770726f66696c656170686669726d77617265f669636f6e6e6563746564f469646576"
        "6963655f69646164696c6173745f7365656ef66b626174746572795f706374f66c636c6f636b5f736b65775f73f942006c6d"
        "616e756661637475726572f66773656e745f617474303030312d30312d30315430303a30303a30305a6c6c6173745f726563"
        "65697074006c6f7574626f785f6465707468006d6167656e745f76657273696f6e606d6f7574626f785f6f6c64657374f6"
    ),
    "year9999": (
        "ab617601636f7267616f656167656e74616166616c61726d7380666f6e6c696e65f56764657669636573806773656e745f61"
        "74781b393939392d31322d33315432333a35393a35392e3939393939395a6c6c6173745f72656365697074006c6f7574626f"
        "785f64657074681b00000100000000006d6167656e745f76657273696f6e69c3a9e28882f09f98806d6f7574626f785f6f6c"
        "64657374f6"
    ),
}


def golden_statuses() -> dict[str, AgentStatus]:
    return {
        "minimal": AgentStatus(org="clinic-1", agent="agt-0001", online=False, sent_at=T),
        "full": AgentStatus(
            org="clinic-1", agent="agt-0001", online=True, sent_at=T + timedelta(microseconds=123456),
            agent_version="1.2.3", outbox_depth=42,
            outbox_oldest=datetime(2026, 2, 28, 23, 59, 59, 500, tzinfo=timezone(timedelta(hours=2))),
            last_receipt=99,
            devices=(
                DeviceStatus(device_id="E0:00:00:00:00:01", profile="heart_rate", name="HR 1", connected=True,
                             last_seen=T, battery_pct=80, manufacturer="ACME", model="X", serial="S1",
                             firmware="1.0", clock_skew_s=-1.5),
                DeviceStatus(device_id="E0:00:00:00:00:02", profile="glucose", clock_skew_s=0.1,
                             last_seen=T + timedelta(microseconds=1000)),
            ),
            alarms=frozenset({"disk_full"}),
        ),
        "skew_int": AgentStatus(
            org="o", agent="a", online=True, sent_at=datetime(1, 1, 1, tzinfo=UTC),
            devices=(DeviceStatus(device_id="d", profile="p", clock_skew_s=3),),
        ),
        "year9999": AgentStatus(
            org="o", agent="a", online=True, sent_at=datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
            outbox_depth=2**40, agent_version="\u00e9\u2202\U0001f600",
        ),
    }  # fmt: skip


@pytest.mark.parametrize("name", sorted(PYDANTIC_WIRE))
def test_status_wire_bytes_are_those_pydantic_wrote(name: str) -> None:
    status = golden_statuses()[name]
    assert _to_wire(status).hex() == PYDANTIC_WIRE[name]
    doc = cbor2.loads(_to_wire(status))
    assert doc.pop("v") == 1
    assert AgentStatus.from_doc(doc) == status  # what ingest opens


def wire(**changes: Any) -> dict[str, Any]:
    doc = golden_statuses()["full"].to_doc()
    doc.update(changes)
    return doc


def device(**changes: Any) -> dict[str, Any]:
    doc = golden_statuses()["full"].devices[0].to_doc()
    doc.update(changes)
    return doc


@pytest.mark.parametrize(
    ("doc", "field", "code"),
    [
        (wire(extra=1), "extra", "extra_forbidden"),
        ({**wire(), 5: 1}, "document", "extra_forbidden"),
        ({k: v for k, v in wire().items() if k != "sent_at"}, "sent_at", "missing"),
        (wire(online=1), "online", "bool_type"),
        (wire(sent_at="yesterday"), "sent_at", "datetime_parsing"),
        (wire(sent_at="2026-03-01T08:30:00"), "sent_at", "timezone_aware"),
        (wire(sent_at=1_700_000_000), "sent_at", "datetime_type"),
        (wire(sent_at="2" * 100), "sent_at", "datetime_parsing"),
        (wire(outbox_depth=-1), "outbox_depth", "greater_than_equal"),
        (wire(outbox_depth=True), "outbox_depth", "int_type"),
        (wire(outbox_depth=1.0), "outbox_depth", "int_type"),
        (wire(last_receipt="5"), "last_receipt", "int_type"),
        (wire(agent_version="v" * 129), "agent_version", "string_too_long"),
        (wire(org=5), "org", "string_type"),
        (wire(alarms=["on_fire"]), "alarms", "value_error"),
        (wire(alarms=[["disk_full"]]), "alarms", "string_type"),
        (wire(alarms="disk_full"), "alarms", "frozen_set_type"),
        (wire(devices={}), "devices", "tuple_type"),
        (wire(devices=[device()] * 65), "devices", "too_long"),
        (wire(devices=[5]), "devices.0", "dict_type"),
        (wire(devices=[device(battery_pct=101)]), "devices.0.battery_pct", "less_than_equal"),
        (wire(devices=[device(battery_pct=True)]), "devices.0.battery_pct", "int_type"),
        (wire(devices=[device(clock_skew_s=float("nan"))]), "devices.0.clock_skew_s", "finite_number"),
        (wire(devices=[device(clock_skew_s=float("inf"))]), "devices.0.clock_skew_s", "finite_number"),
        (wire(devices=[device(clock_skew_s="1")]), "devices.0.clock_skew_s", "float_type"),
        (wire(devices=[device(device_id="")]), "devices.0.device_id", "string_too_short"),
        (wire(devices=[device(device_id="d" * 129)]), "devices.0.device_id", "string_too_long"),
        (wire(devices=[device(serial="s" * 129)]), "devices.0.serial", "string_too_long"),
        (wire(devices=[device(connected="yes")]), "devices.0.connected", "bool_type"),
        (wire(devices=[device(last_seen="2026-03-01")]), "devices.0.last_seen", "timezone_aware"),
        (wire(devices=[device(secret=1)]), "devices.0.secret", "extra_forbidden"),
        (wire(devices=[{"device_id": "d"}]), "devices.0.profile", "missing"),
    ],
)
def test_a_hostile_status_names_the_field_never_the_value(doc: dict[str, Any], field: str, code: str) -> None:
    with pytest.raises(InvalidField) as err:
        AgentStatus.from_doc(doc)
    assert (err.value.field, err.value.code) == (field, code)
    assert isinstance(err.value, ContractError)
    assert "on_fire" not in str(err.value)


def test_statuses_built_in_code_are_checked_too() -> None:
    with pytest.raises(InvalidField, match="alarms"):
        AgentStatus(org="o", agent="a", online=True, sent_at=T, alarms=frozenset({"on_fire"}))
    with pytest.raises(InvalidField, match="sent_at"):
        AgentStatus(org="o", agent="a", online=True, sent_at=datetime(2026, 3, 1))  # naive
    with pytest.raises(InvalidField, match=r"devices\.0"):
        AgentStatus(org="o", agent="a", online=True, sent_at=T, devices=({"device_id": "d"},))  # type: ignore[arg-type]
    status = DeviceStatus(device_id="d", profile="p")
    with pytest.raises(InvalidField, match="battery_pct"):
        dataclasses.replace(status, battery_pct=-1)
    plus2 = timezone(timedelta(hours=2))
    assert dataclasses.replace(status, last_seen=T.astimezone(plus2)).last_seen.utcoffset() == timedelta(0)  # type: ignore[union-attr]


def test_device_status_json_round_trip_is_compact_and_strict() -> None:
    status = golden_statuses()["full"].devices[0]
    text = status.to_json()
    assert " " not in text.replace("HR 1", "")
    assert DeviceStatus.from_json(text) == status
    with pytest.raises(InvalidField):
        DeviceStatus.from_json("{")
    with pytest.raises(InvalidField):
        DeviceStatus.from_json("[" * 100_000)


SERVER = ServerKey.generate()


def bundle(**changes: Any) -> EnrollmentBundle:
    values: dict[str, Any] = {
        "org": "clinic-1",
        "agent_id": "agt-0001",
        "broker": BrokerEndpoint(host="127.0.0.1", port=8883, server_name="broker.vigil", ca_pem="-----BEGIN..."),
        "mqtt_username": "agt-0001",
        "mqtt_password": "pw-secret",
        "enrollment_token": new_token(),
        "server_keys": (ServerKeyInfo.of(SERVER.public()),),
        "expires_at": T + timedelta(days=7),
    }
    values.update(changes)
    return EnrollmentBundle(**values)


def test_bundle_json_keeps_the_former_layout() -> None:
    b = bundle()
    doc = json.loads(b.to_json())
    assert list(doc) == [
        "v", "org", "agent_id", "broker", "mqtt_username", "mqtt_password", "enrollment_token", "server_keys",
        "expires_at",
    ]  # fmt: skip
    assert list(doc["broker"]) == ["host", "port", "server_name", "ca_pem"]
    assert doc["expires_at"] == "2026-03-08T08:30:00Z"
    assert doc["mqtt_password"] == "pw-secret"
    assert EnrollmentBundle.from_json(b.to_json()) == b
    assert isinstance(b.mqtt_password, Secret)
    assert "pw-secret" not in repr(b) and "pw-secret" not in str(b.mqtt_password)  # noqa: PT018
    assert b.mqtt_password == Secret("pw-secret")


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"v": 2}, "v"),
        ({"v": True}, "v"),
        ({"mqtt_username": ""}, "mqtt_username"),
        ({"mqtt_username": "u" * 129}, "mqtt_username"),
        ({"mqtt_password": 5}, "mqtt_password"),
        ({"server_keys": ()}, "server_keys"),
        ({"server_keys": (ServerKeyInfo.of(SERVER.public()),) * 5}, "server_keys"),
        ({"expires_at": datetime(2026, 3, 1)}, "expires_at"),
        ({"broker": {"host": "h"}}, "broker"),
    ],
)
def test_bad_bundles_name_the_field(changes: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidField) as err:
        bundle(**changes)
    assert err.value.field == field
    with pytest.raises(InvalidIdentifier):
        bundle(org="Bad Org")


@pytest.mark.parametrize(
    ("edit", "named"),
    [
        (lambda d: d.update(extra=1), "extra"),
        (lambda d: d.pop("expires_at"), "expires_at"),
        (lambda d: d["broker"].update(port=0), "broker.port"),
        (lambda d: d["broker"].update(port="8883"), "broker.port"),
        (lambda d: d["broker"].update(host="h" * 254), "broker.host"),
        (lambda d: d["broker"].update(ca_pem="c" * 20_001), "broker.ca_pem"),
        (lambda d: d["broker"].pop("host"), "broker.host"),
        (lambda d: d["broker"].update(x=1), "broker.x"),
        (lambda d: d.update(server_keys={}), "server_keys"),
        (lambda d: d["server_keys"][0].update(kid=5), "server_keys.kid"),
        (lambda d: d["server_keys"][0].update(x=5), "server_keys.x"),
        (lambda d: d.update(expires_at="soon"), "expires_at"),
        (lambda d: d.update(org="Bad Org"), "invalid_identifier"),
    ],
)
def test_a_bad_bundle_file_is_a_config_error_naming_the_field(edit: Any, named: str) -> None:
    doc = json.loads(bundle().to_json())
    edit(doc)
    with pytest.raises(ConfigError) as err:
        EnrollmentBundle.from_json(json.dumps(doc))
    assert str(err.value) == f"not a valid enrollment bundle ({named})"
    for text in ("[" * 100_000, "not json", "[]", "5"):
        with pytest.raises(ConfigError):
            EnrollmentBundle.from_json(text)


def test_check_helpers_refuse_what_pydantic_strict_would() -> None:
    assert checks.number("x", 3) == 3.0
    assert type(checks.number("x", 3)) is float
    for bad in (True, "1", None, float("nan"), 10**400):
        with pytest.raises(InvalidField):
            checks.number("x", bad)
    for bad in (True, 1.0, "1", None):
        with pytest.raises(InvalidField):
            checks.integer("x", bad)
    with pytest.raises(InvalidField):
        checks.one_of("x", "c", ("a", "b"))
    with pytest.raises(InvalidField) as err:
        checks.known_fields("where", {"k" * 100: 1}, ["a"])
    assert err.value.field == "where.(a key)"  # a long or odd key is not echoed

"""The boundary: every foreign error leaves provisioning as one of its own, data fields kept, chained."""

from __future__ import annotations

from pathlib import Path

import pytest

from broker_config.errors import ControlUnavailable, LayoutError, ReservedName
from provisioning import errors
from rpm_core.errors import ConfigError, InvalidIdentifier
from store import errors as store_errors


@pytest.mark.parametrize(
    ("foreign", "expected", "fields"),
    [
        (store_errors.NotFound("patient", "clinic-1/p9"), errors.NotFound, {"kind": "patient", "key": "clinic-1/p9"}),
        (
            store_errors.Conflict("agent", "agt-1", "exists already"),
            errors.Conflict,
            {"kind": "agent", "key": "agt-1", "why": "exists already"},
        ),
        (
            store_errors.DatabaseUnavailable("database unavailable (57P01)", sqlstate="57P01"),
            errors.DatabaseUnavailable,
            {"sqlstate": "57P01", "cause": "database_unavailable"},
        ),
        (
            store_errors.Rejected("the database refused the change: doomed", sqlstate="P0001"),
            errors.DatabaseError,
            {"cause": "rejected"},
        ),
        (store_errors.MigrationError("not migrated"), errors.DatabaseError, {"cause": "migration"}),
        (
            ControlUnavailable("the broker refused vigil-admin"),
            errors.BrokerError,
            {"cause": "broker_control_unavailable"},
        ),
        (LayoutError(Path("/srv"), "mosquitto", "cannot enter"), errors.BrokerError, {"cause": "broker_layout"}),
        (ReservedName("vigil-admin", "reserved"), errors.BrokerError, {"cause": "reserved_name"}),
        (InvalidIdentifier("agent", "a b"), errors.InvalidRequest, {"field": "agent_id"}),
        (ConfigError("no server key: run `vigil keys init`"), errors.ServerKeyError, {}),
        (
            PermissionError(13, "Permission denied", "/keys/mqtt/broker.lock"),
            errors.FileAccessError,
            {"path": Path("/keys/mqtt/broker.lock"), "strerror": "Permission denied"},
        ),
    ],
)
def test_foreign_errors_are_translated_with_their_data(
    foreign: Exception, expected: type[errors.ProvisioningError], fields: dict[str, object]
) -> None:
    with pytest.raises(expected) as caught, errors.translating():
        raise foreign
    assert type(caught.value) is expected
    assert caught.value.__cause__ is foreign
    assert str(foreign) in str(caught.value) or isinstance(foreign, OSError)
    for name, value in fields.items():
        assert getattr(caught.value, name) == value


def test_own_errors_pass_unchanged_and_bugs_are_not_disguised() -> None:
    own = errors.BrokerOutOfSync("run `vigil broker sync`")
    with pytest.raises(errors.BrokerOutOfSync) as caught, errors.translating():
        raise own
    assert caught.value is own
    with pytest.raises(KeyError), errors.translating():
        raise KeyError("a bug stays a bug")


def test_the_tree() -> None:
    assert issubclass(errors.DatabaseUnavailable, errors.DatabaseError)
    assert issubclass(errors.BrokerOutOfSync, errors.BrokerError)
    for name in errors.__all__:
        item = getattr(errors, name)
        if isinstance(item, type):
            assert issubclass(item, errors.ProvisioningError)
            assert item.reason  # a stable code for the API and logs

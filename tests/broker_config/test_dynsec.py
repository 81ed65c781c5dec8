"""The access model and the dynamic security file and commands, without a broker (the broker's own
reading of them is in test_secure_broker.py and tests/security/)."""

from __future__ import annotations

import json

import pytest

from broker_config.accounts import (
    ADMIN_USERNAME,
    AclType,
    BrokerAccount,
    Grant,
    admin_account,
    agent_account,
    check_agent_name,
    ingest_account,
    ingest_usernames,
)
from broker_config.dynsec import (
    DEFAULT_ACL_ACCESS,
    BrokerState,
    ClientState,
    parse_file,
    plan_reconcile,
    render_dynsec,
)
from broker_config.errors import AccountError, ReservedName
from broker_config.passwords import hash_password, split_hash

PW = hash_password("pw", salt=b"0123456789ab")


def test_each_account_is_bound_to_its_own_client_id_and_role() -> None:
    doc = json.loads(render_dynsec([agent_account("clinic-1", "agt-1", PW), admin_account(PW)]))
    assert doc["defaultACLAccess"] == dict(DEFAULT_ACL_ACCESS)
    assert not any(doc["defaultACLAccess"][k] for k in ("publishClientSend", "publishClientReceive", "subscribe"))
    client = next(c for c in doc["clients"] if c["username"] == "agt-1")
    parts = split_hash(PW)
    assert parts is not None
    assert client == {
        "username": "agt-1",
        "clientid": "agt-1",
        "roles": [{"rolename": "agt-1"}],
        "password": parts.digest_b64,
        "salt": parts.salt_b64,
        "iterations": 101,
    }
    role = next(r for r in doc["roles"] if r["rolename"] == "agt-1")
    assert role["acls"] == [
        {"acltype": "publishClientSend", "topic": "vigil/v1/clinic-1/agt-1/up/#", "allow": True},
        {"acltype": "subscribePattern", "topic": "vigil/v1/clinic-1/agt-1/down/#", "allow": True},
        {"acltype": "publishClientReceive", "topic": "vigil/v1/clinic-1/agt-1/down/#", "allow": True},
    ]


def test_ingest_may_subscribe_to_exactly_its_shared_filter() -> None:
    grants = ingest_account("vigil-ingest-2", PW).grants
    subscribe = [g for g in grants if g.acltype in (AclType.SUBSCRIBE_LITERAL, AclType.SUBSCRIBE_PATTERN)]
    assert subscribe == [Grant(AclType.SUBSCRIBE_LITERAL, "$share/ingest/vigil/v1/+/+/up/#")]
    assert ingest_usernames(3) == ["vigil-ingest-1", "vigil-ingest-2", "vigil-ingest-3"]


@pytest.mark.parametrize("name", ["vigil-ingest", "vigil-ingest-1", "vigil-admin", "vigil-x"])
def test_the_service_prefix_is_reserved(name: str) -> None:
    with pytest.raises(ReservedName) as caught:
        check_agent_name(name)
    assert caught.value.username == name
    with pytest.raises(ReservedName):
        agent_account("clinic-1", name, PW)


@pytest.mark.parametrize(("org", "agent"), [("clinic-1", "a/b"), ("clinic-1", "#"), ("clinic/+", "agt-1"), ("c", "")])
def test_ids_that_would_widen_a_topic_filter_are_refused(org: str, agent: str) -> None:
    with pytest.raises(AccountError):
        agent_account(org, agent, PW)


def test_a_username_defined_twice_or_a_bad_hash_is_refused() -> None:
    with pytest.raises(AccountError, match="defined twice"):
        render_dynsec([ingest_account("vigil-ingest-1", PW), ingest_account("vigil-ingest-1", PW)])
    with pytest.raises(AccountError, match=r"\$7\$"):
        agent_account("clinic-1", "agt-1", "plaintext")


def state_of(accounts: list[BrokerAccount]) -> BrokerState:
    return parse_file(json.loads(render_dynsec(accounts)))


def test_a_broker_in_line_needs_no_command() -> None:
    desired = [agent_account("clinic-1", "agt-1", PW), admin_account(PW)]
    plan = plan_reconcile(desired, state_of(desired), {})
    assert not plan.changes
    assert (plan.created, plan.removed, plan.repaired, plan.missing) == ([], [], [], [])


def test_reconcile_removes_repairs_creates_and_reports_what_it_cannot_create() -> None:
    desired = [
        agent_account("clinic-1", "agt-1", PW),  # present, but its binding was removed
        agent_account("clinic-1", "agt-2", PW),  # missing: only its hash is known
        ingest_account("vigil-ingest-2", PW),  # missing: its password is known
        admin_account(PW),
    ]
    actual = state_of([desired[0], desired[3], agent_account("clinic-1", "agt-gone", PW)])
    clients = dict(actual.clients)
    clients["agt-1"] = ClientState("agt-1", None, ("agt-1",))
    roles = dict(actual.roles)
    roles[ADMIN_USERNAME] = frozenset({("subscribePattern", "#", True)})  # widened by hand
    actual = BrokerState(clients, roles, {**actual.default_access, "subscribe": True})
    plan = plan_reconcile(desired, actual, {"vigil-ingest-2": "secret"})
    assert plan.removed == ["agt-gone"]
    assert plan.created == ["vigil-ingest-2"]
    assert plan.repaired == ["agt-1", ADMIN_USERNAME]
    assert plan.missing == ["agt-2"]
    names = [c["command"] for c in plan.commands]
    # deletions first, then roles, then clients (a client's role must exist when it is attached)
    assert names.index("deleteClient") < names.index("createRole") < names.index("createClient")
    assert names[-1] == "setDefaultACLAccess"
    create = next(c for c in plan.commands if c["command"] == "createClient")
    assert create == {
        "command": "createClient",
        "username": "vigil-ingest-2",
        "password": "secret",
        "clientid": "vigil-ingest-2",
        "roles": [{"rolename": "vigil-ingest-2"}],
    }
    repairs = {c["username"]: c for c in plan.commands if c["command"] == "modifyClient"}
    assert repairs["agt-1"]["clientid"] == "agt-1"
    assert {"command": "deleteRole", "rolename": "agt-gone"} in plan.commands


@pytest.mark.parametrize("junk", [None, [], "x", {"clients": "x", "roles": [1, {"rolename": 2}]}])
def test_a_file_that_is_not_what_we_wrote_parses_to_nothing(junk: object) -> None:
    state = parse_file(junk)
    assert (dict(state.clients), dict(state.roles)) == ({}, {})

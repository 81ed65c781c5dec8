"""Who may log in to the broker and what each account may do (Mosquitto's dynamic security model).

Every account is a dynamic-security *client* (the MQTT username) bound to exactly one MQTT client
id, equal to its username: a CONNECT with another client id is refused, so no account can take
over another account's session (an agent connecting as ``vigil-ingest-1`` with ``clean_start=0``
used to inherit ingest's session and its queued envelopes). Each account has one *role* of the
same name holding its grants. Nothing is granted by default: a SUBSCRIBE, a PUBLISH and a delivery
are each refused unless a grant matches, and SUBSCRIBE is checked against the whole filter,
``$share/{group}/`` prefix included, when the client subscribes (MQTT 5 reason 0x87 in the SUBACK).

================  ===============================  ===========================================
account           client id                        grants
================  ===============================  ===========================================
agent ``A``       ``A``                            publish ``vigil/v1/{org}/A/up/#``;
                                                   subscribe to and receive ``.../A/down/#``
``vigil-ingest-N``  ``vigil-ingest-N`` (one per     subscribe to exactly
                  ingest worker)                   ``$share/ingest/vigil/v1/+/+/up/#``; receive
                                                   ``vigil/v1/+/+/up/#``; publish
                                                   ``vigil/v1/+/+/down/#``
``vigil-admin``   ``vigil-admin``                  publish ``$CONTROL/dynamic-security/v1``;
                                                   subscribe to and receive its ``/response``
================  ===============================  ===========================================

Agent ids are chosen by operators (``vigil agents create --agent``), so the ``vigil-`` prefix is
reserved for service accounts: :func:`check_agent_name` refuses it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Final

from broker_config.errors import AccountError, ReservedName
from broker_config.passwords import split_hash
from rpm_core.errors import InvalidIdentifier
from rpm_core.ids import AgentId, OrgId
from rpm_core.ids import agent_id as check_agent_id
from rpm_core.ids import org_id as check_org_id
from rpm_core.topics import INGEST_GROUP, PREFIX, Direction, Topic, ingest_subscription

__all__ = [
    "ADMIN_USERNAME",
    "CONTROL_RESPONSE_TOPIC",
    "CONTROL_TOPIC",
    "INGEST_USERNAME",
    "RESERVED_PREFIX",
    "AclType",
    "BrokerAccount",
    "Grant",
    "admin_account",
    "agent_account",
    "check_accounts",
    "check_agent_name",
    "ingest_account",
    "ingest_usernames",
]

RESERVED_PREFIX: Final = "vigil-"
ADMIN_USERNAME: Final = "vigil-admin"
INGEST_PREFIX: Final = "vigil-ingest-"
# The first ingest worker's account (and client id), the default of `vigil ingest`.
INGEST_USERNAME: Final = f"{INGEST_PREFIX}1"
CONTROL_TOPIC: Final = "$CONTROL/dynamic-security/v1"
CONTROL_RESPONSE_TOPIC: Final = f"{CONTROL_TOPIC}/response"


class AclType(StrEnum):
    """Dynamic security ACL types (plugins/dynamic-security/README.md)."""

    PUBLISH = "publishClientSend"  # the client may publish to topics matching the filter
    RECEIVE = "publishClientReceive"  # the broker may deliver messages on matching topics to it
    SUBSCRIBE_LITERAL = "subscribeLiteral"  # the client may SUBSCRIBE with exactly this filter
    SUBSCRIBE_PATTERN = "subscribePattern"  # ... with this filter or a narrower one


@dataclass(frozen=True, slots=True, order=True)
class Grant:
    acltype: AclType
    topic: str

    def to_json(self) -> dict[str, object]:
        return {"acltype": str(self.acltype), "topic": self.topic, "allow": True}


@dataclass(frozen=True, slots=True)
class BrokerAccount:
    """One broker login: username = client id = role name; ``password_hash`` in ``$7$`` form."""

    username: str
    password_hash: str = field(repr=False)
    grants: tuple[Grant, ...]

    @property
    def clientid(self) -> str:
        return self.username

    @property
    def rolename(self) -> str:
        return self.username


def check_agent_name(agent: str) -> str:
    """``agent`` as a broker username: a valid agent id outside the reserved ``vigil-`` namespace."""
    try:
        check_agent_id(agent)
    except InvalidIdentifier as exc:
        raise AccountError(agent, "not a valid agent id (a-z, 0-9, '_', '-'; at most 63)") from exc
    if agent.startswith(RESERVED_PREFIX):
        raise ReservedName(agent, f"the {RESERVED_PREFIX!r} prefix is reserved for Vigil's service accounts")
    return agent


def _checked(username: str, password_hash: str, grants: Sequence[Grant]) -> BrokerAccount:
    if split_hash(password_hash) is None:
        raise AccountError(username, "password hash is not in Mosquitto's $7$ format")
    return BrokerAccount(username, password_hash, tuple(grants))


def agent_account(org: str, agent: str, password_hash: str) -> BrokerAccount:
    """An edge agent: publish under its own uplink, subscribe to and receive its own downlink."""
    check_agent_name(agent)
    try:
        check_org_id(org)
    except InvalidIdentifier as exc:
        raise AccountError(agent, "its organisation id is not valid in a topic") from exc
    up = Topic.agent_filter(OrgId(org), AgentId(agent), Direction.UP)
    down = Topic.agent_filter(OrgId(org), AgentId(agent), Direction.DOWN)
    grants = (
        Grant(AclType.PUBLISH, up),
        Grant(AclType.SUBSCRIBE_PATTERN, down),
        Grant(AclType.RECEIVE, down),
    )
    return _checked(agent, password_hash, grants)


def ingest_usernames(workers: int) -> list[str]:
    """The accounts of ``workers`` ingest workers: ``vigil-ingest-1`` ... ``vigil-ingest-N``."""
    return [f"{INGEST_PREFIX}{n}" for n in range(1, workers + 1)]


def ingest_account(username: str, password_hash: str, *, group: str = INGEST_GROUP) -> BrokerAccount:
    """An ingest worker: exactly the shared subscription, every uplink delivered, every downlink published."""
    grants = (
        Grant(AclType.SUBSCRIBE_LITERAL, ingest_subscription(group)),
        Grant(AclType.RECEIVE, f"{PREFIX}/+/+/{Direction.UP}/#"),
        Grant(AclType.PUBLISH, f"{PREFIX}/+/+/{Direction.DOWN}/#"),
    )
    return _checked(username, password_hash, grants)


def admin_account(password_hash: str) -> BrokerAccount:
    """Provisioning's account on a running broker: the dynamic security control topic only."""
    grants = (
        Grant(AclType.PUBLISH, CONTROL_TOPIC),
        Grant(AclType.SUBSCRIBE_LITERAL, CONTROL_RESPONSE_TOPIC),
        Grant(AclType.RECEIVE, CONTROL_RESPONSE_TOPIC),
    )
    return _checked(ADMIN_USERNAME, password_hash, grants)


def check_accounts(accounts: Iterable[BrokerAccount]) -> list[BrokerAccount]:
    """``accounts`` sorted by username; refuses two accounts with one name (the broker keeps one)."""
    out: dict[str, BrokerAccount] = {}
    for account in accounts:
        if account.username in out:
            raise AccountError(account.username, "defined twice (an agent id colliding with another account?)")
        out[account.username] = account
    return [out[name] for name in sorted(out)]

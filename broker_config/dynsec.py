"""Mosquitto's dynamic security plugin: its JSON file and control commands, built from accounts.

Pure: no I/O. :mod:`broker_config.render` writes the file while the broker is stopped (the plugin
reads it once at start and never again: no reload on SIGHUP), :mod:`broker_config.control` sends
the commands to a running broker, which then rewrites the file itself: in place up to Mosquitto
2.0.15 (its ``FILE.new`` path is cut to the file's own name by a buffer one suffix too short),
``FILE.new`` + rename from 2.0.16.

The file, as Mosquitto 2.0 reads and writes it (``plugins/dynamic-security``: ``clients.c``,
``roles.c``, ``plugin.c``)::

    {"defaultACLAccess": {"publishClientSend": false, "publishClientReceive": false,
                          "subscribe": false, "unsubscribe": true},
     "clients": [{"username": "agt-1", "clientid": "agt-1", "roles": [{"rolename": "agt-1"}],
                  "password": "<base64 64-byte PBKDF2-SHA512>", "salt": "<base64 12 bytes>",
                  "iterations": 101}],
     "roles": [{"rolename": "agt-1", "acls": [{"acltype": "publishClientSend",
                                              "topic": "vigil/v1/clinic-1/agt-1/up/#", "allow": true}]}]}

``password``/``salt``/``iterations`` are exactly the parts of our ``$7$`` hashes
(:func:`broker_config.passwords.split_hash`), so the database's hashes are rendered as they are.

:func:`plan_reconcile` compares what should exist with what a running broker reports
(``listClients``/``listRoles`` verbose, ``getDefaultACLAccess``) and returns the commands that
make them equal, except for accounts it cannot create: the control API takes only plaintext
passwords, and the database holds agents' hashes only.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from broker_config.accounts import BrokerAccount, check_accounts
from broker_config.errors import AccountError
from broker_config.passwords import split_hash

__all__ = [
    "DEFAULT_ACL_ACCESS",
    "BrokerState",
    "ClientState",
    "Command",
    "ReconcilePlan",
    "create_commands",
    "delete_commands",
    "parse_file",
    "parse_listing",
    "plan_reconcile",
    "render_dynsec",
]

Command = dict[str, Any]
Acl = tuple[str, str, bool]  # acltype, topic, allow

# Nothing unless granted; unsubscribing from what one may not have is harmless.
DEFAULT_ACL_ACCESS: Final[Mapping[str, bool]] = {
    "publishClientSend": False,
    "publishClientReceive": False,
    "subscribe": False,
    "unsubscribe": True,
}


def _password_fields(account: BrokerAccount) -> dict[str, Any]:
    parts = split_hash(account.password_hash)
    if parts is None:
        raise AccountError(account.username, "password hash is not in Mosquitto's $7$ format")
    return {"password": parts.digest_b64, "salt": parts.salt_b64, "iterations": parts.iterations}


def _role_json(account: BrokerAccount) -> dict[str, Any]:
    return {"rolename": account.rolename, "acls": [g.to_json() for g in account.grants]}


def render_dynsec(accounts: Iterable[BrokerAccount]) -> str:
    """The plugin's JSON file for exactly these accounts (refuses a username used twice)."""
    checked = check_accounts(accounts)
    doc = {
        "defaultACLAccess": dict(DEFAULT_ACL_ACCESS),
        "clients": [
            {
                "username": a.username,
                "clientid": a.clientid,
                "roles": [{"rolename": a.rolename}],
                **_password_fields(a),
            }
            for a in checked
        ],
        "roles": [_role_json(a) for a in checked],
    }
    return json.dumps(doc, indent=1) + "\n"


# -- control commands -----------------------------------------------------------------------------


def _create_role(account: BrokerAccount) -> Command:
    return {"command": "createRole", **_role_json(account)}


def create_commands(account: BrokerAccount, password: str) -> list[Command]:
    """Create the account on a running broker (its role first; the caller checked it is absent)."""
    return [
        {"command": "deleteRole", "rolename": account.rolename},  # a stale role of a failed attempt
        _create_role(account),
        {
            "command": "createClient",
            "username": account.username,
            "password": password,
            "clientid": account.clientid,
            "roles": [{"rolename": account.rolename}],
        },
    ]


def delete_commands(username: str) -> list[Command]:
    """Remove an account: the broker disconnects its connected clients at once (deleteClient)."""
    return [{"command": "deleteClient", "username": username}, {"command": "deleteRole", "rolename": username}]


# -- the broker's state ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ClientState:
    username: str
    clientid: str | None
    roles: tuple[str, ...]
    disabled: bool = False


@dataclass(frozen=True, slots=True)
class BrokerState:
    clients: Mapping[str, ClientState]
    roles: Mapping[str, frozenset[Acl]]
    default_access: Mapping[str, bool] = field(default_factory=dict)


def _str(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _clients(items: object) -> dict[str, ClientState]:
    out: dict[str, ClientState] = {}
    for item in items if isinstance(items, list) else []:
        if not isinstance(item, dict) or (username := _str(item.get("username"))) is None:
            continue
        roles = item.get("roles")
        names = tuple(
            sorted(
                r["rolename"]
                for r in (roles if isinstance(roles, list) else [])
                if isinstance(r, dict) and _str(r.get("rolename"))
            )
        )
        out[username] = ClientState(username, _str(item.get("clientid")), names, item.get("disabled") is True)
    return out


def _roles(items: object) -> dict[str, frozenset[Acl]]:
    out: dict[str, frozenset[Acl]] = {}
    for item in items if isinstance(items, list) else []:
        if not isinstance(item, dict) or (name := _str(item.get("rolename"))) is None:
            continue
        acls = item.get("acls")
        out[name] = frozenset(
            (str(a.get("acltype")), str(a.get("topic")), a.get("allow") is True)
            for a in (acls if isinstance(acls, list) else [])
            if isinstance(a, dict)
        )
    return out


def parse_file(doc: object) -> BrokerState:
    """The state in the plugin's JSON file (as rendered here or rewritten by the broker)."""
    d = doc if isinstance(doc, dict) else {}
    access = d.get("defaultACLAccess")
    default = {k: v for k, v in access.items() if isinstance(v, bool)} if isinstance(access, dict) else {}
    return BrokerState(_clients(d.get("clients")), _roles(d.get("roles")), default)


def parse_listing(clients: Mapping[str, Any], roles: Mapping[str, Any], access: Mapping[str, Any]) -> BrokerState:
    """The state from the ``data`` of listClients/listRoles (verbose) and getDefaultACLAccess."""
    acls = access.get("acls")
    default = {
        str(a["acltype"]): a["allow"]
        for a in (acls if isinstance(acls, list) else [])
        if isinstance(a, dict) and isinstance(a.get("allow"), bool) and _str(a.get("acltype"))
    }
    return BrokerState(_clients(clients.get("clients")), _roles(roles.get("roles")), default)


def _acls(account: BrokerAccount) -> frozenset[Acl]:
    return frozenset((str(g.acltype), g.topic, True) for g in account.grants)


# -- reconciling a running broker -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ReconcilePlan:
    commands: list[Command]
    created: list[str]  # accounts created (their password was known)
    removed: list[str]  # accounts the broker had and should not
    repaired: list[str]  # accounts whose client id, role or grants were wrong
    missing: list[str]  # accounts that should exist and cannot be created here (no plaintext)

    @property
    def changes(self) -> bool:
        return bool(self.commands)


def plan_reconcile(
    desired: Sequence[BrokerAccount], actual: BrokerState, passwords: Mapping[str, str]
) -> ReconcilePlan:
    """Commands that make a running broker hold exactly ``desired``.

    ``passwords`` maps the usernames whose plaintext is at hand (service accounts) to it; other
    desired accounts missing from the broker are listed in ``missing``. Order matters and is kept:
    removals, then roles, then clients (a client's roles must exist when it is created).
    """
    want = {a.username: a for a in check_accounts(desired)}
    commands: list[Command] = []
    removed = sorted(set(actual.clients) - set(want))
    for username in removed:
        commands.append({"command": "deleteClient", "username": username})
    for role in sorted(set(actual.roles) - set(want)):
        commands.append({"command": "deleteRole", "rolename": role})
    created: list[str] = []
    repaired: list[str] = []
    missing: list[str] = []
    late: list[Command] = []
    for name, account in want.items():
        client = actual.clients.get(name)
        role_ok = actual.roles.get(account.rolename) == _acls(account)
        if client is None:
            if name not in passwords:
                missing.append(name)
                continue
            created.append(name)
            if account.rolename in actual.roles:
                commands.append({"command": "deleteRole", "rolename": account.rolename})
            commands.append(_create_role(account))
            late.append(create_commands(account, passwords[name])[-1])
            continue
        if not role_ok:
            if account.rolename in actual.roles:
                commands.append({"command": "deleteRole", "rolename": account.rolename})
            commands.append(_create_role(account))
        if not role_ok or client.clientid != account.clientid or client.roles != (account.rolename,):
            repaired.append(name)
            late.append(
                {
                    "command": "modifyClient",
                    "username": name,
                    "clientid": account.clientid,
                    "roles": [{"rolename": account.rolename}],
                }
            )
        if client.disabled:
            repaired.append(name)
            late.append({"command": "enableClient", "username": name})
    commands += late
    if {k: actual.default_access.get(k) for k in DEFAULT_ACL_ACCESS} != dict(DEFAULT_ACL_ACCESS):
        commands.append(
            {
                "command": "setDefaultACLAccess",
                "acls": [{"acltype": k, "allow": v} for k, v in DEFAULT_ACL_ACCESS.items()],
            }
        )
    return ReconcilePlan(commands, created, removed, sorted(set(repaired)), missing)

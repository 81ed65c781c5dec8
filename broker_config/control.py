"""The running broker's control API: dynamic security commands sent as the ``vigil-admin`` account.

Commands are JSON published (QoS 1) to ``$CONTROL/dynamic-security/v1``; the plugin answers on
``$CONTROL/dynamic-security/v1/response`` with one response per command, in order, each carrying
the ``correlationData`` we sent and an ``error`` string when it failed. :meth:`DynsecControl.run`
sends a list of commands as one message (the plugin applies them one after the other: no
transaction, so callers order them and undo on failure) and raises :class:`ControlError` for the
first failed one, except "not found" answers to deletions (deleting is idempotent here).

The admin connects over the broker's TLS listener like any client: our CA, the broker's TLS name
checked, username and password, client id ``vigil-admin`` (its account is bound to it). Mosquitto
applies a command and rewrites its JSON file before it answers; a failed rewrite is only logged by
the broker, so callers read the file back (:func:`broker_config.render.persisted_state`).
"""

from __future__ import annotations

import json
import secrets
import ssl
import threading
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Final

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from broker_config.accounts import ADMIN_USERNAME, CONTROL_RESPONSE_TOPIC, CONTROL_TOPIC, BrokerAccount
from broker_config.dynsec import BrokerState, Command, ReconcilePlan, create_commands, delete_commands, parse_listing
from broker_config.errors import ControlError, ControlUnavailable

__all__ = ["DynsecControl"]

_NOT_FOUND: Final = ("Client not found", "Role not found")
_DELETES: Final = ("deleteClient", "deleteRole")


class DynsecControl:
    """A connection to the broker as ``vigil-admin``; use as a context manager.

    ``host`` must be a name in the broker's certificate (it is checked).
    """

    def __init__(
        self,
        *,
        host: str,
        port: int,
        ca_file: Path,
        password: str,
        timeout_s: float = 15.0,
    ) -> None:
        self._host, self._port, self._timeout = host, port, timeout_s
        ctx = ssl.create_default_context(cafile=str(ca_file))
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        self._cond = threading.Condition()
        self._responses: dict[str, dict[str, Any]] = {}
        self._connected: int | None = None  # CONNACK reason code
        self._subscribed: int | None = None  # SUBACK reason code
        self._prefix = secrets.token_hex(6)
        self._seq = 0
        c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=ADMIN_USERNAME, protocol=mqtt.MQTTv5)
        c.tls_set_context(ctx)
        c.username_pw_set(ADMIN_USERNAME, password)
        c.on_connect = self._on_connect
        c.on_subscribe = self._on_subscribe
        c.on_message = self._on_message
        self._client = c

    # -- lifecycle ------------------------------------------------------------------------------

    def __enter__(self) -> DynsecControl:
        self.open()
        return self

    def __exit__(self, _t: type[BaseException] | None, _e: BaseException | None, _tb: TracebackType | None) -> None:
        self.close()

    def open(self) -> None:
        try:
            self._client.connect(self._host, self._port, keepalive=30)
        except ssl.SSLCertVerificationError as exc:
            raise ControlUnavailable(f"TLS certificate rejected ({exc.verify_message})") from exc
        except (OSError, ValueError) as exc:
            raise ControlUnavailable(f"cannot connect to {self._host}:{self._port} ({type(exc).__name__})") from exc
        self._client.loop_start()
        try:
            self._handshake()
        except BaseException:
            self.close()
            raise

    def _handshake(self) -> None:
        connack = self._wait(lambda: self._connected, "no CONNACK")
        if connack != 0:
            raise ControlUnavailable(f"the broker refused {ADMIN_USERNAME} (reason 0x{connack:02X})")
        self._client.subscribe(CONTROL_RESPONSE_TOPIC, qos=1)
        suback = self._wait(lambda: self._subscribed, "no SUBACK")
        if suback >= 0x80:
            raise ControlUnavailable(f"{ADMIN_USERNAME} may not read {CONTROL_RESPONSE_TOPIC} (0x{suback:02X})")

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()
        # Break the client <-> bound-callback cycle: freed by reference counting, the client's own
        # __del__ closes its wake-up socket pair; left to the cycle collector, the sockets may be
        # finalized first, unclosed (a ResourceWarning at a random later point).
        self._client.on_connect = self._client.on_subscribe = self._client.on_message = None

    # -- commands -------------------------------------------------------------------------------

    def run(self, commands: Sequence[Command]) -> list[dict[str, Any]]:
        """Send ``commands`` as one message; their responses, in order. Raises on the first failure."""
        if not commands:
            return []
        ids = []
        tagged = []
        for command in commands:
            self._seq += 1
            ids.append(f"{self._prefix}-{self._seq}")
            tagged.append({**command, "correlationData": ids[-1]})
        info = self._client.publish(CONTROL_TOPIC, json.dumps({"commands": tagged}), qos=1)
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            raise ControlUnavailable(f"cannot send the commands ({mqtt.error_string(info.rc)})")
        answers: list[dict[str, Any]] = self._wait(lambda: self._take(ids), "no answer to the commands")
        for command, answer in zip(commands, answers, strict=True):
            error = answer.get("error")
            if error is None or (command["command"] in _DELETES and error in _NOT_FOUND):
                continue
            raise ControlError(str(command["command"]), str(error)[:200])
        return answers

    def state(self) -> BrokerState:
        """Every client and role the broker holds now, and its default ACL access."""
        clients, roles, access = self.run(
            [
                {"command": "listClients", "verbose": True},
                {"command": "listRoles", "verbose": True},
                {"command": "getDefaultACLAccess"},
            ]
        )
        return parse_listing(clients.get("data", {}), roles.get("data", {}), access.get("data", {}))

    def exists(self, username: str) -> bool:
        answer = self._run_one({"command": "getClient", "username": username})
        if answer.get("error") == "Client not found":
            return False
        if answer.get("error") is not None:
            raise ControlError("getClient", str(answer["error"])[:200])
        return True

    def create(self, account: BrokerAccount, password: str) -> None:
        """Create an account that must not exist yet (else :class:`ControlError`)."""
        if self.exists(account.username):
            raise ControlError("createClient", f"the broker has an account {account.username!r} already")
        self.run(create_commands(account, password))

    def delete(self, username: str) -> None:
        """Delete an account (connected clients are disconnected); no error if it does not exist."""
        self.run(delete_commands(username))

    def apply(self, plan: ReconcilePlan) -> None:
        self.run(plan.commands)

    # -- paho thread ----------------------------------------------------------------------------

    def _run_one(self, command: Command) -> dict[str, Any]:
        self._seq += 1
        cid = f"{self._prefix}-{self._seq}"
        self._client.publish(CONTROL_TOPIC, json.dumps({"commands": [{**command, "correlationData": cid}]}), qos=1)
        answers: list[dict[str, Any]] = self._wait(lambda: self._take([cid]), "no answer to the command")
        return answers[0]

    def _take(self, ids: list[str]) -> list[dict[str, Any]] | None:
        if not all(i in self._responses for i in ids):
            return None
        return [self._responses.pop(i) for i in ids]

    def _wait(self, ready: Any, what: str) -> Any:
        """``ready()``'s first value that is not None (called under the lock; it may consume what it returns)."""
        got: list[Any] = []

        def poll() -> bool:
            value = ready()
            if value is not None:
                got.append(value)
            return bool(got)

        with self._cond:
            if not self._cond.wait_for(poll, self._timeout):
                raise ControlUnavailable(f"{what} within {self._timeout:.0f} s")
        return got[0]

    def _on_connect(self, _c: mqtt.Client, _u: object, _f: object, reason: Any, _p: object) -> None:
        with self._cond:
            self._connected = int(reason.value)
            self._cond.notify_all()

    def _on_subscribe(self, _c: mqtt.Client, _u: object, _mid: int, codes: Any, _p: object) -> None:
        with self._cond:
            self._subscribed = int(codes[0].value)
            self._cond.notify_all()

    def _on_message(self, _c: mqtt.Client, _u: object, msg: mqtt.MQTTMessage) -> None:
        try:
            doc = json.loads(msg.payload)
        except ValueError:
            return
        responses = doc.get("responses") if isinstance(doc, dict) else None
        with self._cond:
            for item in responses if isinstance(responses, list) else []:
                cid = item.get("correlationData") if isinstance(item, dict) else None
                if isinstance(cid, str) and cid.startswith(self._prefix):
                    self._responses[cid] = item
            self._cond.notify_all()

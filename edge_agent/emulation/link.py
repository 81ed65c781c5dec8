"""The virtual radio that emulated BLE devices and the emulated central share.

In-process (tests, ``vigil demo``): :class:`VirtualAir` wraps bumble's ``LocalLink``. Every
peripheral and the central radio get their own :class:`EmulatedController` on it, each driven by a
real bumble host stack, so ATT/GATT/SMP bytes travel as ACL data between two host stacks.

Cross-process (benchmarks that measure the agent process alone): bumble 0.0.236 ships only
``LocalLink`` (``RemoteLink`` and the link relay were removed: ``open_transport_or_link`` is a
deprecated alias of ``open_transport``), and ``hci_socket`` needs a kernel we do not have. We split
at the HCI boundary instead, exactly where a USB dongle sits: the *device process* owns the link,
the peripherals and the central's controller, and serves that controller as HCI H4 over TCP
(bumble's ``tcp-server`` transport, one host at a time); the agent process runs only the central
host stack (bumble ``Host`` + ``Device``), attached with the ``tcp-client`` transport. Start it with
:meth:`DeviceProcess.start` (or by hand: ``python -c "from edge_agent.emulation.link import
run_device_process; run_device_process()"``); device specs are the profile factory's keyword
arguments plus ``"profile"`` (a key of ``profiles.PROFILES``) and ``"clock_offset"`` in seconds.
The peripherals are driven through a JSON-lines protocol on the child's stdin/stdout:

    parent -> child, first line:  {"devices": [{"profile": "heart_rate", "name": "HR-1", ...}]}
    child -> parent, first line:  {"hci": "tcp-client:127.0.0.1:PORT", "addresses": {name: addr}}
    parent -> child:              {"id": 1, "device": "HR-1", "op": "notify", "uuid": "2a37",
                                   "payload": "<hex>"}
    child -> parent:              {"id": 1, "ok": true, "result": ...} | {"id": 1, "ok": false,
                                   "error": "..."}

Ops: notify, indicate, set_value, take_measurement, add_record, inject_error, drop_link, stream
(push ``count`` payloads every ``interval`` seconds, for benchmarks), shutdown.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from bumble import hci
from bumble.controller import Controller
from bumble.host import Host
from bumble.link import LocalLink
from bumble.transport import open_transport
from bumble.transport.common import AsyncPipeSink, Transport
from bumble.transport.tcp_server import open_tcp_server_transport_with_socket

if TYPE_CHECKING:
    from edge_agent.emulation.peripheral import EmulatedPeripheral

__all__ = ["DeviceProcess", "DeviceProcessError", "EmulatedController", "VirtualAir", "run_device_process"]


class EmulatedController(Controller):
    """bumble's virtual controller with LE Create Connection Cancel fixed.

    bumble 0.0.236 answers the cancel with success but keeps ``pending_le_connection`` and never
    reports the cancelled connection, so a timed-out connect hangs the host and every later
    connect fails with Command Disallowed. The spec (Vol 4, Part E, 7.8.13) wants an LE Connection
    Complete event with status Unknown Connection Identifier after the Command Complete.
    """

    def on_hci_le_create_connection_cancel_command(
        self, command: hci.HCI_LE_Create_Connection_Cancel_Command
    ) -> hci.HCI_StatusReturnParameters:
        pending = self.pending_le_connection
        self.pending_le_connection = None
        if pending is not None:
            event = hci.HCI_LE_Connection_Complete_Event(
                status=hci.HCI_ErrorCode.UNKNOWN_CONNECTION_IDENTIFIER_ERROR,
                connection_handle=0,
                role=hci.Role.CENTRAL,
                peer_address_type=pending.peer_address.address_type,
                peer_address=pending.peer_address,
                connection_interval=0,
                peripheral_latency=0,
                supervision_timeout=0,
                central_clock_accuracy=0,
            )
            # Scheduled now, delivered after the Command Complete the caller sends.
            asyncio.get_running_loop().call_soon(self.send_hci_packet, event)
        return hci.HCI_StatusReturnParameters(hci.HCI_ErrorCode.SUCCESS)


class VirtualAir:
    """One shared radio medium (a bumble ``LocalLink``). Create it inside the running loop."""

    def __init__(self) -> None:
        self.link = LocalLink()  # type: ignore[no-untyped-call]
        self._next_peripheral = 0
        self._next_central = 0

    def allocate_address(self, *, central: bool = False) -> str:
        """A fresh random static address: ``C0:..`` for centrals, ``E0:..`` for peripherals."""
        if central:
            self._next_central += 1
            return f"C0:00:00:00:{self._next_central >> 8:02X}:{self._next_central & 0xFF:02X}"
        self._next_peripheral += 1
        number = self._next_peripheral
        return f"E0:00:00:00:{number >> 8:02X}:{number & 0xFF:02X}"

    def attach_host(self, name: str, address: str) -> Host:
        """A bumble host stack wired to a new controller on this link."""
        controller = EmulatedController(name, link=self.link, public_address=address)
        return Host(controller, AsyncPipeSink(controller))

    async def serve_hci(self, name: str, address: str) -> tuple[Transport, str]:
        """Expose a new controller on this link as HCI H4 over TCP on a free loopback port.

        Returns the transport (close it when done) and the bumble transport name a host in
        another process opens to reach the controller.
        """
        # proto must be IPPROTO_TCP: asyncio only sets TCP_NODELAY on sockets that say so, and
        # with Nagle on, every ATT round trip waits ~40 ms for the peer's delayed ACK.
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
        transport = await open_tcp_server_transport_with_socket(sock)
        EmulatedController(
            name,
            host_source=transport.source,
            host_sink=transport.sink,
            link=self.link,
            public_address=address,
        )
        return transport, f"tcp-client:127.0.0.1:{port}"


async def open_hci_host(transport_name: str) -> tuple[Host, Transport]:
    """A bumble host stack attached to a controller served by another process."""
    transport = await open_transport(transport_name)
    return Host(transport.source, transport.sink), transport


class DeviceProcessError(RuntimeError):
    """The device process refused a request (``reason`` is its error) or died."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class _Hello:
    hci: str
    addresses: dict[str, str]


class DeviceProcess:
    """Parent-side handle on emulated peripherals running in a child Python process.

    Use ``async with await DeviceProcess.start([...]) as devices:``; pass ``devices.hci`` to
    ``EmulatedRadio.open_hci`` to get the central.
    """

    def __init__(self, process: asyncio.subprocess.Process, hello: _Hello) -> None:
        self._process = process
        self._stdin, self._stdout = _pipes(process)
        self.hci = hello.hci
        self.addresses = hello.addresses
        self._next_id = 0
        self._pending: dict[int, asyncio.Future[Any]] = {}
        self._reader = asyncio.create_task(self._read_replies())

    @classmethod
    async def start(cls, devices: Sequence[Mapping[str, Any]], *, startup_timeout: float = 20.0) -> DeviceProcess:
        """Spawn a Python child running :func:`run_device_process` with these device specs.

        Each spec is ``{"profile": <factory name in peripheral.PROFILES>, "name": ..., **kwargs}``.
        """
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            _CHILD_COMMAND,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        stdin, stdout = _pipes(process)
        stdin.write(json.dumps({"devices": list(devices)}).encode() + b"\n")
        await stdin.drain()
        try:
            async with asyncio.timeout(startup_timeout):
                line = await stdout.readline()
            hello = json.loads(line)
            return cls(process, _Hello(hci=hello["hci"], addresses=hello["addresses"]))
        except (TimeoutError, ValueError, KeyError) as exc:
            process.kill()
            await process.wait()
            raise DeviceProcessError("startup-failed") from exc

    async def _read_replies(self) -> None:
        while line := await self._stdout.readline():
            reply = json.loads(line)
            future = self._pending.pop(int(reply["id"]), None)
            if future is None or future.done():
                continue
            if reply.get("ok"):
                future.set_result(reply.get("result"))
            else:
                future.set_exception(DeviceProcessError(str(reply.get("error"))))
        for future in self._pending.values():
            if not future.done():
                future.set_exception(DeviceProcessError("exited"))
        self._pending.clear()

    async def request(self, device: str, op: str, **args: Any) -> Any:
        """Send one op to a named device and wait for its reply."""
        if self._reader.done():
            raise DeviceProcessError("exited")
        self._next_id += 1
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[self._next_id] = future
        message = {"id": self._next_id, "device": device, "op": op, **args}
        self._stdin.write(json.dumps(message).encode() + b"\n")
        await self._stdin.drain()
        return await future

    async def notify(self, device: str, uuid: int | str, payload: bytes) -> Any:
        return await self.request(device, "notify", uuid=_uuid_arg(uuid), payload=payload.hex())

    async def indicate(self, device: str, uuid: int | str, payload: bytes) -> Any:
        return await self.request(device, "indicate", uuid=_uuid_arg(uuid), payload=payload.hex())

    async def drop_link(self, device: str) -> Any:
        return await self.request(device, "drop_link")

    async def aclose(self, grace: float = 5.0) -> None:
        """Ask the child to exit; kill it if it has not within ``grace`` seconds."""
        if self._process.returncode is None:
            with contextlib.suppress(DeviceProcessError, ConnectionError, TimeoutError):
                async with asyncio.timeout(grace):
                    await self.request("", "shutdown")
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(grace):
                    await self._process.wait()
            if self._process.returncode is None:
                self._process.kill()
                await self._process.wait()
        self._reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reader

    async def __aenter__(self) -> DeviceProcess:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()


def _pipes(
    process: asyncio.subprocess.Process,
) -> tuple[asyncio.StreamWriter, asyncio.StreamReader]:
    if process.stdin is None or process.stdout is None:
        raise DeviceProcessError("no-pipes")
    return process.stdin, process.stdout


def _uuid_arg(uuid: int | str) -> str:
    return f"{uuid:04x}" if isinstance(uuid, int) else uuid


# ---------------------------------------------------------------- child side


async def _serve_child() -> None:  # pragma: no cover - runs in the child process
    from edge_agent.emulation import profiles  # the child needs the profiles; lazy: no cycle

    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    spec = json.loads(await reader.readline())
    air = VirtualAir()
    devices: dict[str, EmulatedPeripheral] = {}
    for entry in spec["devices"]:
        kwargs = dict(entry)
        factory = profiles.PROFILES[kwargs.pop("profile")]
        if "clock_offset" in kwargs:
            kwargs["clock_offset"] = timedelta(seconds=float(kwargs["clock_offset"]))
        device = factory(air, **kwargs)
        await device.start()
        devices[device.name] = device
    transport, hci_name = await air.serve_hci("hci0", air.allocate_address(central=True))
    addresses = {name: device.address for name, device in devices.items()}
    _write_line({"hci": hci_name, "addresses": addresses})
    streams: set[asyncio.Task[None]] = set()
    while line := await reader.readline():
        message = json.loads(line)
        if message["op"] == "shutdown":
            _write_line({"id": message["id"], "ok": True, "result": None})
            break
        try:
            result = await _apply_op(devices[message["device"]], message, streams)
        except (KeyError, ValueError, TypeError, RuntimeError, TimeoutError) as exc:
            _write_line({"id": message["id"], "ok": False, "error": repr(exc)})
        else:
            _write_line({"id": message["id"], "ok": True, "result": result})
    for task in streams:
        task.cancel()
    for device in devices.values():
        await device.stop()
    await transport.close()


async def _apply_op(  # pragma: no cover - child process
    device: EmulatedPeripheral, message: Mapping[str, Any], streams: set[asyncio.Task[None]]
) -> Any:
    op = message["op"]
    uuid = message.get("uuid", "")
    payload = bytes.fromhex(message.get("payload", ""))
    match op:
        case "notify":
            return await device.notify(uuid, payload)
        case "indicate":
            return await device.indicate(uuid, payload)
        case "set_value":
            device.set_value(uuid, payload)
        case "take_measurement":
            await device.take_measurement(uuid, payload)
        case "add_record":
            from edge_agent.emulation.profiles import GlucoseMeter

            if not isinstance(device, GlucoseMeter):
                raise TypeError(device.name)
            context = message.get("context")
            device.add_record(
                int(message["sequence"]),
                payload,
                None if context is None else bytes.fromhex(context),
            )
        case "inject_error":
            device.inject_error(
                uuid, int(message["code"]), op=message.get("on", "read"), times=int(message.get("times", 1))
            )
        case "drop_link":
            await device.drop_link()
        case "stream":
            task = asyncio.create_task(_stream(device, uuid, payload, message))
            streams.add(task)
            task.add_done_callback(streams.discard)
        case _:
            raise ValueError(op)
    return None


async def _stream(  # pragma: no cover - child process
    device: EmulatedPeripheral, uuid: str, payload: bytes, message: Mapping[str, Any]
) -> None:
    """Push ``count`` payloads every ``interval`` s (notify, or indicate when asked)."""
    push = device.indicate if message.get("indicate") else device.notify
    interval = float(message.get("interval", 1.0))
    for _ in range(int(message.get("count", 1))):
        await push(uuid, payload)
        await asyncio.sleep(interval)


def _write_line(message: Mapping[str, Any]) -> None:  # pragma: no cover - child process
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


def run_device_process() -> None:  # pragma: no cover - child process entry point
    """Serve the devices described on stdin (the child side of :class:`DeviceProcess`)."""
    asyncio.run(_serve_child())


# Not ``-m edge_agent.emulation.link``: the package imports this module first and runpy warns.
_CHILD_COMMAND = "from edge_agent.emulation.link import run_device_process; run_device_process()"

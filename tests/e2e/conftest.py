"""A rendered platform (real CLI provisioning, Mosquitto on the rendered configuration), an agent
enrolled with the real ``vigil edge enroll``, an empty emulated radio and in-process ingest workers:
what the catalogue's end-to-end fault tests share (tests/e2e/test_edge_to_store.py keeps its own)."""

from __future__ import annotations

import asyncio
import getpass
import socket
import struct
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import pytest_asyncio
from typer.testing import CliRunner

from edge_agent.ble import Radio
from edge_agent.cli import app as edge_app
from edge_agent.config_file import read_config, write_config
from edge_agent.emulation import EmulatedRadio, VirtualAir
from edge_agent.settings import PairedDevice
from ingest.service import IngestService
from rpm_core.enrollment import EnrollmentBundle
from rpm_core.keystore import load_server_keys
from tests.support.platform import RenderedPlatform, start_platform
from vigil_testkit.agent_harness import Enrolled

E2E_AGENT = "agt-e2e-fault"
# Short timers so a run stays short; the code paths are production's.
TUNING: dict[str, Any] = {"mqtt_backoff_cap_s": 2.0, "registration_retry_s": 1.0, "batch_max_age_s": 0.2}


@pytest.fixture
def rendered(db: str, tmp_path: Path) -> Iterator[RenderedPlatform]:
    p = start_platform(db, tmp_path)
    try:
        yield p
    finally:
        p.stop()


def enroll_with_cli(
    platform: RenderedPlatform,
    tmp_path: Path,
    agent: str,
    *,
    devices: tuple[PairedDevice, ...] = (),
    state_dir: Path | None = None,
    **tuning: Any,
) -> Enrolled:
    """``vigil agents create`` then ``vigil edge enroll`` into ``tmp_path/agent`` (the state in
    ``state_dir`` when given); ``tuning`` over :data:`TUNING`; ``devices`` paired."""
    bundle_path = tmp_path / f"{agent}.bundle.json"
    platform.vigil(
        "agents", "create", "--org", "clinic-1", "--patient", "p1", "--agent", agent, "--out", str(bundle_path)
    )
    directory, state_dir = tmp_path / agent / "edge", state_dir or tmp_path / agent / "state"
    result = CliRunner().invoke(
        edge_app,
        ["enroll", "--bundle", str(bundle_path), "--dir", str(directory), "--state-dir", str(state_dir),
         "--time-zone", "UTC", "--owner", getpass.getuser()],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    config = directory / "agent.toml"
    write_config(config, {**read_config(config), **TUNING, **tuning}, devices)
    return Enrolled(config, EnrollmentBundle.read(bundle_path), directory, state_dir)


@pytest_asyncio.fixture
async def empty_radio() -> AsyncIterator[Radio]:
    central = await EmulatedRadio.open(VirtualAir())  # no devices: readings are put in the outbox by the test
    try:
        yield Radio(central.scanner_backend, central.client_backend)
    finally:
        await central.close()


def ingest_worker(platform: RenderedPlatform, **overrides: Any) -> IngestService:
    svc = IngestService(
        platform.ingest_settings(**overrides),
        keyring=load_server_keys(platform.key_dir),
        mqtt_password=platform.ingest_password(),
    )
    svc.start()
    return svc


def rows(db: str, sql: str, *args: object) -> list[tuple[Any, ...]]:
    with psycopg.connect(db) as conn:
        return conn.execute(sql, args).fetchall()


async def until(
    cond: Callable[[], Any], what: str, *, running: asyncio.Task[None] | None = None, limit_s: float = 60
) -> None:
    """Wait (``limit_s`` at most) until ``cond()`` (called in a thread) is true; fail at once if ``running`` ends."""
    try:
        async with asyncio.timeout(limit_s):
            while not await asyncio.to_thread(cond):
                if running is not None and running.done():
                    raise AssertionError(f"the agent stopped while waiting for {what}: {running.exception()!r}")
                await asyncio.sleep(0.1)
    except TimeoutError:
        raise AssertionError(f"timed out waiting for {what}") from None


class CuttableLink:
    """A TCP relay between the agent and the broker (bytes only: TLS runs end to end through it)
    whose connections the test can cut at once, with a reset and no goodbye (SO_LINGER 0): the
    link drops with whatever is in flight on it. It keeps listening, so the agent reconnects."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = 0
        self.cuts = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._downstream = asyncio.Event()  # set: bytes from the broker reach the agent
        self._downstream.set()

    async def start(self) -> CuttableLink:
        self._server = await asyncio.start_server(self._relay, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def _relay(self, down_r: asyncio.StreamReader, down_w: asyncio.StreamWriter) -> None:
        try:
            up_r, up_w = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            down_w.close()
            return
        self._writers |= {down_w, up_w}

        async def pump(r: asyncio.StreamReader, w: asyncio.StreamWriter, gate: asyncio.Event | None) -> None:
            try:
                while data := await r.read(65536):
                    if gate is not None:
                        await gate.wait()
                    w.write(data)
                    await w.drain()
            except OSError:
                pass
            finally:
                w.close()

        await asyncio.gather(pump(down_r, up_w, None), pump(up_r, down_w, self._downstream))
        self._writers -= {down_w, up_w}

    def hold_downstream(self) -> None:
        """Keep what the broker sends (PUBACKs, receipts) from reaching the agent until the next cut:
        envelopes the server has already stored stay unacknowledged on the agent's side."""
        self._downstream.clear()

    def cut(self) -> None:
        for w in list(self._writers):
            sock = w.get_extra_info("socket")
            if sock is not None:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            w.transport.abort()
        self._writers.clear()
        self.cuts += 1
        self._downstream.set()  # the next connection flows both ways

    async def stop(self) -> None:
        self.cut()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

"""Catalogue 11: the edge disk full, for real.

The agent's state directory is a 1 MiB tmpfs; the real agent reads an emulated heart-rate strap
and delivers through the rendered broker to real ingest. Then the disk is filled to the last byte
(ENOSPC): SQLite cannot append, cannot evict the oldest readings (on a really full disk even a
DELETE needs room in the write-ahead log) and cannot even write the gap. The agent raises its local
``disk_full`` alarm, counts the readings lost, keeps running, and the alarm reaches the server in a
status; a receipt that arrives meanwhile (and cannot delete anything) does not stop it either.
When room comes back, the next write gives the lost readings their sequence numbers as a
``disk_full`` gap, which reaches the server (``agent_gaps``) with its reason; everything after it
is stored, and every sequence number issued is either a stored reading or inside a gap.
"""

from __future__ import annotations

import asyncio
import errno
import os
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import pytest_asyncio

from edge_agent.agent import Agent
from edge_agent.ble import Radio
from edge_agent.emulation import EmulatedPeripheral, EmulatedRadio, VirtualAir, heart_rate_strap
from edge_agent.outbox import inspect_outbox
from edge_agent.settings import PairedDevice
from tests.e2e.conftest import enroll_with_cli, ingest_worker, rows, until
from tests.support.platform import RenderedPlatform

AGENT = "agt-diskfull"
HR = "E0:00:00:00:30:01"


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    mount = tmp_path / "small-disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {done.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(directory: Path) -> Path:
    filler = directory / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        while True:
            try:
                os.write(fd, b"\0" * 512)
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise
                return filler
    finally:
        os.close(fd)


@pytest_asyncio.fixture
async def strap() -> AsyncIterator[tuple[EmulatedPeripheral, Radio]]:
    air = VirtualAir()
    device = heart_rate_strap(air, name="HR", address=HR)
    await device.start()
    central = await EmulatedRadio.open(air)
    try:
        yield device, Radio(central.scanner_backend, central.client_backend)
    finally:
        await central.close()
        await device.stop()


@pytest.mark.asyncio
async def test_catalogue_11_disk_full_raises_the_alarm_and_the_gap_is_recorded_and_reported(
    rendered: RenderedPlatform, tmp_path: Path, small_disk: Path, strap: tuple[EmulatedPeripheral, Radio]
) -> None:
    platform, (device, radio) = rendered, strap
    enrolled = await asyncio.to_thread(
        enroll_with_cli,
        platform,
        tmp_path,
        AGENT,
        devices=(PairedDevice(address=HR, profile="heart_rate", name="HR"),),
        state_dir=small_disk / "state",
    )
    settings, ident = await asyncio.to_thread(lambda: (enrolled.settings(), enrolled.identity()))
    svc = await asyncio.to_thread(ingest_worker, platform)
    agent = Agent(settings, ident, radio=radio, version="test")
    stop = asyncio.Event()
    task = asyncio.create_task(agent.run(stop))
    beats = 0

    async def beat() -> None:
        nonlocal beats
        assert await device.notify(0x2A37, bytes([0x06, 60 + beats % 50])) == 1
        beats += 1

    def receipted() -> int:
        return inspect_outbox(settings.outbox_path).stats.last_receipt

    def server_alarms() -> list[str]:
        found = rows(platform.db, "SELECT alarms FROM agent_status WHERE agent_id = %s", AGENT)
        return list(found[0][0]) if found else []

    try:
        await until(lambda: device.is_subscribed(0x2A37), "the agent subscribed to the strap", running=task)
        for _ in range(5):
            await beat()
        await until(lambda: receipted() == 5, "the first readings delivered", running=task)

        # Three more readings stored while ingest is away: their receipt will arrive on a full disk.
        await asyncio.to_thread(svc.stop, 5)
        for _ in range(3):
            await beat()
        await until(lambda: inspect_outbox(settings.outbox_path).stats.last_allocated == 8, "stored", running=task)
        filler = await asyncio.to_thread(fill, small_disk)
        svc = await asyncio.to_thread(ingest_worker, platform)  # the receipt comes; the outbox cannot delete
        assert agent.state is not None
        while "disk_full" not in agent.state.alarms:  # each beat: append, evict, record the gap: all refused
            await beat()
            await asyncio.sleep(0.05)
            assert beats < 500, "the disk never filled"
            assert not task.done()
        for _ in range(3):
            await beat()
        await until(
            lambda: agent.state is not None and agent.state.counters["dropped_disk_full"] >= 3, "losses counted"
        )
        await until(lambda: "disk_full" in server_alarms(), "the alarm at the server", running=task)
        lost_seen = agent.state.counters["dropped_disk_full"]

        await asyncio.to_thread(filler.unlink)  # room again
        for _ in range(5):
            await beat()
        await until(lambda: "disk_full" not in agent.state.alarms if agent.state else False, "alarm cleared")
        issued = await asyncio.to_thread(lambda: inspect_outbox(settings.outbox_path).stats.last_allocated)
        await until(lambda: receipted() == issued, "everything after the outage receipted", running=task)
        assert not task.done()  # still running
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)
        await asyncio.to_thread(svc.stop, 5)

    stored = [
        s for (s,) in await asyncio.to_thread(rows, platform.db, "SELECT seq FROM readings WHERE agent_id = %s", AGENT)
    ]
    gaps = await asyncio.to_thread(
        rows, platform.db, "SELECT first_seq, last_seq, reason FROM agent_gaps WHERE agent_id = %s ORDER BY 1", AGENT
    )
    assert gaps, "the loss reached the server as a gap"
    assert all(reason == "disk_full" for _, _, reason in gaps)
    in_gaps = {s for first, last, _ in gaps for s in range(first, last + 1)}
    assert sum(last - first + 1 for first, last, _ in gaps) == lost_seen  # exactly the readings lost
    assert sorted(stored) == sorted(set(stored))  # each once
    assert set(stored) | in_gaps == set(range(1, issued + 1))  # every number: stored, or in a gap
    assert not set(stored) & in_gaps
    assert len(stored) == beats - lost_seen

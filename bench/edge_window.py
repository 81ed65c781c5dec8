"""Catalogue 7: the power-loss window between the Bluetooth stack's confirmation and the outbox commit.

When a device indicates a measurement, the central's stack confirms it at ATT level (BlueZ's
``bt_gatt_client`` and bumble's GATT client alike confirm as soon as the value is handed up) and the
device counts it delivered; a power cut before the outbox transaction holding the reading commits
loses it. This measures that window on the agent's real path: emulated devices (bumble, speaking
real ATT/GATT on a virtual radio) reached through bleak, the agent's :class:`DeviceSession`, its
queue, decoder and converter, and the real :class:`AsyncOutbox` (SQLite on its own thread, WAL,
``synchronous=FULL``) in ``--dir``. The session's ``on_committed`` hook (off in the agent) gives
each value's :func:`time.monotonic_ns` in bleak's callback and just after ``append`` returned.

Load: a thermometer indicates ``--readings`` temperatures, one every ``--interval-s`` (each waits
for its ATT confirmation); meanwhile a heart-rate strap notifies every ``--strap-interval-s`` (the
background a strap or oximeter makes in a patient's home; its windows are reported separately).
``append_ms`` is the time spent inside the outbox's ``append`` alone (thread hop, SQLite, fsync):
the rest of the window is the session's queue, decoding and the event loop.

The devices run in the agent's own event loop here (on a Pi they are other radios, and the stack is
``bluetoothd``, another process): queueing behind them makes the figures pessimistic. What is not
measured: BlueZ's hop from its confirmation to bleak's callback over D-Bus (a few ms on a Pi).

Run: ``.venv/bin/python -m bench.edge_window`` (``--dir /path/on/the/sd/card`` on a Pi).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import resource
import secrets
import statistics
import tempfile
import time
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from bleak import BleakScanner

from edge_agent.ble import CommitWindow, DeviceSession, Radio, SessionOptions
from edge_agent.emulation import EmulatedRadio, VirtualAir, heart_rate_strap, thermometer
from edge_agent.outbox import AsyncOutbox, SqliteOutbox
from edge_agent.outbox.store import Cursor
from edge_agent.settings import PairedDevice
from edge_agent.state import AgentState
from rpm_core.clock import SystemClock
from rpm_core.ids import agent_id
from rpm_core.reading import Reading

AGENT = agent_id("agt-window")
KID = "kid-window"
TEMPERATURE = bytes.fromhex("06b00e00fedc070c050b321b04")  # 37.60 Cel, 2012-12-05 11:50:27, finger
HEART_RATE = bytes.fromhex("064e")  # 78 bpm, contact
THERMOMETER, STRAP = 0x2A1C, 0x2A37


class TimedOutbox:
    """The outbox, with the time each ``append`` took recorded (nothing else changes)."""

    def __init__(self, inner: AsyncOutbox) -> None:
        self._inner = inner
        self.append_ns: list[int] = []

    async def append(self, readings: Sequence[Reading], *, cursor: Cursor | None = None) -> list[int]:
        start = time.monotonic_ns()
        try:
            return await self._inner.append(readings, cursor=cursor)
        finally:
            self.append_ns.append(time.monotonic_ns() - start)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


def summary(ns: Sequence[int]) -> dict[str, Any]:
    if not ns:
        return {"count": 0}
    ms = sorted(n / 1e6 for n in ns)
    q = statistics.quantiles(ms, n=100, method="inclusive") if len(ms) > 1 else [ms[0]] * 99
    return {
        "count": len(ms),
        "p50_ms": round(q[49], 3),
        "p99_ms": round(q[98], 3),
        "max_ms": round(ms[-1], 3),
        "mean_ms": round(statistics.fmean(ms), 3),
    }


def cpu_note() -> str:
    model = platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("model name", "Model")):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return f"{model}, {os.cpu_count()} CPUs shared with other work (load average {load}); not a Raspberry Pi"


def filesystem(path: Path) -> str:
    """The type and device of the mount holding ``path`` (fsync latency is the device's)."""
    best = ("", "unknown", "unknown")
    try:
        for line in Path("/proc/mounts").read_text().splitlines():
            device, mount, kind = line.split()[:3]
            if str(path.resolve()).startswith(mount) and len(mount) >= len(best[0]):
                best = (mount, kind, device)
    except OSError:
        pass
    return f"{best[1]} on {best[2]}"


async def find(radio: Radio, address: str) -> Any:
    device = await BleakScanner.find_device_by_address(address, timeout=10.0, backend=radio.scanner_backend)
    if device is None:
        raise RuntimeError(f"{address} not found")
    return device


async def measure(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    key = secrets.token_bytes(32)
    path = work / "outbox.db"
    SqliteOutbox.create(path, key=key, agent=AGENT, kid=KID, clock=SystemClock())
    inner = await AsyncOutbox.open(path, key=key, agent=AGENT, kid=KID, clock=SystemClock(), max_readings=10**7)
    outbox = TimedOutbox(inner)
    air = VirtualAir()
    temp, strap = thermometer(air, name="T"), heart_rate_strap(air, name="HR")
    await temp.start()
    await strap.start()
    central = await EmulatedRadio.open(air)
    radio = Radio(central.scanner_backend, central.client_backend)
    paired = [
        PairedDevice(address=temp.address, profile="thermometer"),
        PairedDevice(address=strap.address, profile="heart_rate"),
    ]
    state = AgentState(paired, clock=SystemClock(), clock_skew_threshold_s=120)
    options = SessionOptions(zone=ZoneInfo("UTC"), clock_skew_threshold=timedelta(minutes=2))
    windows: list[CommitWindow] = []
    tasks = []
    for p in paired:
        session = DeviceSession(
            p, radio=radio, agent=AGENT, outbox=outbox, state=state, clock=SystemClock(), options=options,
            on_stored=lambda: None, on_committed=windows.append,
        )  # fmt: skip
        tasks.append(asyncio.create_task(session.run(await find(radio, p.address))))
    stop = asyncio.Event()

    async def background() -> None:
        while not stop.is_set():
            await strap.notify(STRAP, HEART_RATE)
            await asyncio.sleep(args.strap_interval_s)

    try:
        await temp.wait_until(lambda: temp.is_subscribed(THERMOMETER))  # each wakes on its own events only
        await strap.wait_until(lambda: strap.is_subscribed(STRAP))
        strapping = asyncio.create_task(background())
        cpu0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.monotonic()
        confirmed = 0
        for _ in range(args.readings):
            confirmed += await temp.indicate(THERMOMETER, TEMPERATURE)
            await asyncio.sleep(args.interval_s)
        async with asyncio.timeout(30):
            while sum(w.characteristic == THERMOMETER for w in windows) < confirmed:  # noqa: ASYNC110
                await asyncio.sleep(0.01)
        elapsed = time.monotonic() - t0
        cpu1 = resource.getrusage(resource.RUSAGE_SELF)
        stop.set()
        await strapping
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await central.close()
        await temp.stop()
        await strap.stop()
        await inner.close()

    indicated = [w.committed_ns - w.received_ns for w in windows if w.characteristic == THERMOMETER]
    notified = [w.committed_ns - w.received_ns for w in windows if w.characteristic == STRAP]
    cpu = (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime)
    result = {
        "confirmed_indications": confirmed,
        **summary(indicated),
        "notifications": summary(notified),
        "append_ms": summary(outbox.append_ns),
        "cpu": cpu_note(),
        "process_cpu_pct_of_core": round(100 * cpu / elapsed, 1),
        "outbox_filesystem": filesystem(work),
        "bound": (
            "the outbox commit: append (a hop to the outbox thread, one SQLite transaction in WAL with "
            "synchronous=FULL, i.e. an fsync of the WAL) is most of the window; the rest is the session queue, "
            "decoding and the event loop. The window scales with the storage's fsync latency."
        ),
    }
    result["append_share_of_p50"] = (
        round(result["append_ms"]["p50_ms"] / result["p50_ms"], 2) if indicated and outbox.append_ns else None
    )
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--readings", type=int, default=300, help="indications from the thermometer")
    ap.add_argument("--interval-s", type=float, default=0.05, help="pause between indications")
    ap.add_argument("--strap-interval-s", type=float, default=0.1, help="between the strap's notifications")
    ap.add_argument("--dir", type=Path, default=None, help="where the outbox lives (default: a temporary dir)")
    args = ap.parse_args()
    if args.dir is not None:
        args.dir.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=args.dir) as work:
            result = asyncio.run(measure(args, Path(work)))
    else:
        with tempfile.TemporaryDirectory() as work:
            result = asyncio.run(measure(args, Path(work)))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()

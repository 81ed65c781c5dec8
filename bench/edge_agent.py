"""Edge agent benchmark: the agent process alone, six emulated devices, the project's TLS broker. Prints JSON.

Set-up, all on this machine: a Mosquitto with the project's TLS + dynamic security configuration; the
six emulated devices in a separate process (``DeviceProcess``: bumble peripherals whose radio is
reached over HCI on TCP, so their work is not billed to the agent); the agent as its own process
(``vigil edge run`` with ``--ble emulated --emulated-hci``, through the console script's entry
point as the systemd unit starts it: only the ``edge`` group, none of the server's) after a real
``vigil edge enroll``; and a receipting server stand-in (the test harness's) that opens every
envelope and signs receipts.

Load: the heart-rate strap (HR + one RR interval) and the oximeter's continuous measurement
(SpO2 + pulse) notify at 1 Hz, i.e. 4 readings/s; every minute the cuff stores a measurement and
opens its connectable window and the thermometer indicates; every two minutes the scale does the
same as the cuff and the glucose meter stores a record (fetched by RACP, polled every minute).

Phases:

1. ``online`` (``--seconds``, default 300): steady state. ``cpu_pct_of_core`` is the agent's
   user + system CPU over the phase (100 = one core) from ``/proc``; ``rss_mb`` its peak resident
   set (MiB), sampled every second, and ``rss_anon_mb`` the peak of its anonymous part (heap and
   stacks; the rest is mapped code). With emulation the agent process also runs the central's
   bumble host stack, work that ``bluetoothd`` does on a Pi: the figures are pessimistic.
2. ``offline`` (``--offline-seconds``, default 60): the broker is stopped, devices keep measuring,
   the outbox buffers. ``outbox_mb_per_day`` (MB = 10^6 bytes) is the growth of the bytes the
   outbox's b-trees use (``dbstat``: page size minus unused bytes, so a short phase is not rounded
   to whole 4 KiB pages; appends fill pages almost completely, so the file grows the same) per day
   of this load; ``offline_7d_mb`` is seven days of it. ``outbox_page_bytes_per_reading`` is the
   page-granular figure for comparison.

Memory over simulated time (``--hours H``, instead of the two phases above): the agent runs on an
accelerated clock (``bench.edge_accel``: ``--speed`` simulated seconds per real second, default
60) through H hours of the same load: the strap and the oximeter notify once per simulated second
(``interval = 1/speed`` in the device process), the cuff and thermometer every simulated minute
and the scale and glucose meter every two, but never more often than every ``--periodic-min-s``
real seconds (default 10: each is a BLE connection of its own, which takes real time). The run
ends when H hours of readings (4 per simulated second: 14,400 an hour) have been receipted *and*
H hours have passed on the agent's clock: when the device process cannot notify as fast as the
speed asks (it lags on a busy machine), the run takes longer and the clock passes more than H
hours (``simulated_hours``). The agent's ``receipt_timeout_s`` is scaled by the speed so that a
slow receipt is not taken for a lost one. The agent's RSS is sampled every ``--sample-s`` real
seconds against hours of readings delivered; ``rss_mb_start`` is the median of the samples
between 10 % and 20 % of the run (after warm-up: caches and the SQLite page cache filled),
``rss_mb_end`` the median of the last 10 %, ``rss_growth_mb`` their difference and
``rss_slope_mb_per_24h`` the least-squares slope after warm-up (per 24 hours of readings), and the
same four for the anonymous part of the resident set (``rss_anon_*``: heap and stacks, where a
leak shows);
``within_bound`` says whether the growth stays at or below ``RSS_GROWTH_BOUND_MB`` (run
``--hours 24`` for the 24-hour check). ``cpu_ms_per_reading`` is the agent's CPU per delivered
reading (comparable across speeds; ``cpu_pct_of_core`` here is at the accelerated load).

Without the emulated radio (``--radio bluez``, ``bench/edge_bluez.py``): the agent with bleak's BlueZ
backend, as on a Pi, on this machine without BlueZ: idle, no readings.

Run: ``.venv/bin/python -m bench.edge_agent`` (``--seconds 60 --offline-seconds 30`` for a quick look);
``.venv/bin/python -m bench.edge_agent --hours 24`` (about 24 minutes at the default speed)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a file: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from edge_agent.devices.heart_rate import HeartRateMeasurement, SensorContact
from edge_agent.devices.pulse_oximeter import PlxContinuousMeasurement
from edge_agent.devices.sfloat import SFloat
from edge_agent.emulation import DeviceProcess
from edge_agent.emulation.demo import glucose_record as demo_record
from edge_agent.settings import PairedDevice
from rpm_core.keys import ServerKey
from vigil_testkit.agent_harness import ReceiptServer, enroll_agent, wait_sync
from vigil_testkit.broker import start_secure_broker

__all__ = [
    "HR",
    "PROFILES",
    "RSS_GROWTH_BOUND_MB",
    "SPECS",
    "SPO2",
    "cpu_seconds",
    "enroll_agent",
    "measure",
    "periodic",
    "rss_mib",
    "start_secure_broker",
    "wait_sync",
]

TARGETS = {"rss_mb": 80.0, "cpu_pct_of_core": 5.0, "offline_7d_mb": 200.0}
RSS_GROWTH_BOUND_MB = 5.0  # over 24 simulated hours (--hours 24)
SPECS: list[dict[str, Any]] = [
    {"profile": "heart_rate", "name": "HR"},
    {"profile": "pulse_oximeter", "name": "SpO2"},
    {"profile": "blood_pressure", "name": "BP", "connectable_window": 5.0},
    {"profile": "weight_scale", "name": "Scale", "connectable_window": 5.0},
    {"profile": "thermometer", "name": "Temp"},
    {"profile": "glucose", "name": "Glucose"},
]
PROFILES = {s["name"]: s["profile"] for s in SPECS}
HR = bytes(HeartRateMeasurement(72, SensorContact.DETECTED, rr_intervals=(853,)))
SPO2 = bytes(PlxContinuousMeasurement(spo2=SFloat(97), pulse_rate=SFloat(72)))
BP = bytes.fromhex("1e8a00580078000000041114293b3c00012700")
WEIGHT = bytes.fromhex("00b036")
TEMP = bytes.fromhex("06b00e00fedc070c050b321b04")
TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK  # utime, stime


def rss_mib(pid: int, field: str = "VmRSS") -> float:
    """A resident-set figure of ``/proc/PID/status`` in MiB: ``VmRSS`` (all), ``RssAnon`` (heap, stacks:
    memory only the process holds) or ``RssFile`` (mapped files: code of the interpreter and the
    extension modules, which the kernel may drop and read again under memory pressure)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    return 0.0


def used_bytes(outbox: Path) -> tuple[int, int, int]:
    """Bytes in use (every b-tree page's size minus its unused bytes, from ``dbstat``), bytes of the
    pages in use ((page_count - freelist_count) * page_size), and the last sequence number allocated."""
    db = sqlite3.connect(f"file:{outbox}?mode=ro", uri=True)
    try:
        used = db.execute("SELECT sum(pgsize - unused) FROM dbstat").fetchone()[0]
        pages = db.execute("PRAGMA page_count").fetchone()[0] - db.execute("PRAGMA freelist_count").fetchone()[0]
        size = db.execute("PRAGMA page_size").fetchone()[0]
        next_seq = db.execute("SELECT value FROM meta WHERE key = 'next_seq'").fetchone()[0]
    finally:
        db.close()
    return int(used), pages * size, int(next_seq) - 1


def glucose_record(seq: int) -> str:
    return demo_record(seq, datetime.now(UTC).replace(tzinfo=None, microsecond=0)).hex()


async def periodic(devices: DeviceProcess, every_s: float = 60.0) -> None:
    minute, seq = 0, 1
    while True:
        await devices.request("BP", "take_measurement", uuid="2a35", payload=BP.hex())
        await devices.indicate("Temp", 0x2A1C, TEMP)
        if minute % 2 == 0:
            await devices.request("Scale", "take_measurement", uuid="2a9d", payload=WEIGHT.hex())
            await devices.request("Glucose", "add_record", sequence=seq, payload=glucose_record(seq))
            seq += 1
        minute += 1
        await asyncio.sleep(every_s)


async def measure(pid: int, seconds: float) -> dict[str, float]:
    cpu0, t0, peak, anon = cpu_seconds(pid), time.monotonic(), 0.0, 0.0
    end = t0 + seconds
    while time.monotonic() < end:
        peak, anon = max(peak, rss_mib(pid)), max(anon, rss_mib(pid, "RssAnon"))
        await asyncio.sleep(1.0)
    cpu = cpu_seconds(pid) - cpu0
    return {
        "cpu_pct_of_core": 100 * cpu / (time.monotonic() - t0),
        "rss_mb": peak,
        "rss_anon_mb": anon,
        "rss_mb_end": rss_mib(pid),
    }


async def run(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    broker = await asyncio.to_thread(start_secure_broker, work / "broker")
    devices = await DeviceProcess.start(SPECS)
    agent: subprocess.Popen[bytes] | None = None
    server = ServerKey.generate()
    try:
        paired = tuple(PairedDevice(address=a, profile=PROFILES[n], name=n) for n, a in devices.addresses.items())
        enrolled = await asyncio.to_thread(
            enroll_agent, work, broker, server, devices=paired, ble_backend="emulated",
            emulated_hci=devices.hci, racp_poll_interval_s=60.0,
        )  # fmt: skip
        token = enrolled.bundle.enrollment_token.get_secret_value()
        receipts = ReceiptServer(broker, server, {enrolled.bundle.agent_id: token}).start()
        log = (work / "agent.log").open("wb")
        # `vigil edge run`, as the systemd unit starts it (the console script's main: vigil_cli.main)
        command = [sys.executable, "-m", "vigil_cli", "edge", "run", "--config", str(enrolled.config)]
        agent = subprocess.Popen(command, stdout=log, stderr=log)  # noqa: ASYNC220 - started once, not awaited

        def connected() -> bool:
            record = receipts.record(enrolled.bundle.agent_id)
            return bool(record and record.statuses and sum(d.connected for d in record.statuses[-1].devices) >= 4)

        await asyncio.to_thread(wait_sync, connected, 60, "the agent connected to its devices")
        total = int(args.seconds + args.offline_seconds + 30)
        await devices.request("HR", "stream", uuid="2a37", payload=HR.hex(), interval=1.0, count=total)
        await devices.request("SpO2", "stream", uuid="2a5f", payload=SPO2.hex(), interval=1.0, count=total)
        driver = asyncio.create_task(periodic(devices))
        await asyncio.sleep(5)  # warm-up: first batches, first receipts
        online = await measure(agent.pid, args.seconds)
        record = receipts.record(enrolled.bundle.agent_id)
        delivered = len(record.readings) if record else 0
        outbox = enrolled.state_dir / "outbox.db"
        await asyncio.to_thread(broker.stop)
        await asyncio.sleep(2)
        used0, paged0, seq0 = used_bytes(outbox)
        t0 = time.monotonic()
        await asyncio.sleep(args.offline_seconds)
        used1, paged1, seq1 = used_bytes(outbox)
        elapsed = time.monotonic() - t0
        driver.cancel()
        receipts.stop()
        per_day = (used1 - used0) / elapsed * 86400
        readings = seq1 - seq0
        return {
            "seconds": args.seconds,
            "offline_seconds": args.offline_seconds,
            "devices": len(SPECS),
            "rss_mb": round(online["rss_mb"], 1),
            "rss_mb_end": round(online["rss_mb_end"], 1),
            "rss_anon_mb": round(online["rss_anon_mb"], 1),
            "cpu_pct_of_core": round(online["cpu_pct_of_core"], 2),
            "readings_delivered_online": delivered,
            "offline_readings_per_s": round(readings / elapsed, 2),
            "outbox_bytes_per_reading": round((used1 - used0) / readings, 1) if readings else None,
            "outbox_page_bytes_per_reading": round((paged1 - paged0) / readings, 1) if readings else None,
            "outbox_mb_per_day": round(per_day / 1e6, 1),
            "offline_7d_mb": round(7 * per_day / 1e6, 1),
            "targets": TARGETS,
            "within_targets": {
                "rss_mb": online["rss_mb"] < TARGETS["rss_mb"],
                "cpu_pct_of_core": online["cpu_pct_of_core"] < TARGETS["cpu_pct_of_core"],
                "offline_7d_mb": 7 * per_day / 1e6 < TARGETS["offline_7d_mb"],
            },
        }
    except BaseException:
        show_agent_log(work)
        raise
    finally:
        stop_agent(agent)
        await devices.aclose()
        await asyncio.to_thread(broker.stop)


def show_agent_log(work: Path) -> None:
    """The end of the agent's log on stderr, when a benchmark run fails."""
    if (work / "agent.log").exists():
        sys.stderr.write((work / "agent.log").read_text(errors="replace")[-4000:])


def stop_agent(agent: subprocess.Popen[bytes] | None) -> None:
    """SIGTERM the agent if it still runs; SIGKILL it after 20 s."""
    if agent is not None and agent.poll() is None:
        agent.terminate()
        try:
            agent.wait(20)
        except subprocess.TimeoutExpired:
            agent.kill()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=300.0, help="online phase (CPU and RSS)")
    ap.add_argument("--offline-seconds", type=float, default=60.0, help="broker down: outbox growth")
    ap.add_argument("--hours", type=float, default=None, help="simulated hours on an accelerated clock (RSS over time)")
    ap.add_argument("--speed", type=float, default=60.0, help="with --hours: simulated seconds per real second")
    ap.add_argument("--sample-s", type=float, default=5.0, help="with --hours: RSS sampled every N real seconds")
    ap.add_argument("--periodic-min-s", type=float, default=10.0, help="with --hours: a BLE connection at most per N s")
    ap.add_argument(
        "--radio", choices=("emulated", "bluez"), default="emulated", help="bluez: the Pi's radio modules, idle"
    )
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="vigil-bench-edge-") as tmp:
        if args.radio == "bluez":
            from bench.edge_bluez import run_bluez

            result = asyncio.run(run_bluez(args, Path(tmp)))
        elif args.hours is not None:
            from bench.edge_hours import run_hours

            result = asyncio.run(run_hours(args, Path(tmp)))
        else:
            result = asyncio.run(run(args, Path(tmp)))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()

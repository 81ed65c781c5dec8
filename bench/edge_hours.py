"""``bench.edge_agent --hours H``: the edge agent's memory over H simulated hours (see bench/edge_agent.py).

The agent runs as ``python -m bench.edge_accel`` (the same modules as ``vigil edge run``, an
accelerated clock); the devices are the same six emulated devices in their own process; the
server side is :class:`bench.edge_receipts.CountingReceipts`, which keeps no readings.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.edge_agent import (  # the test harness pieces come through bench.edge_agent, which already imports them
    HR,
    PROFILES,
    RSS_GROWTH_BOUND_MB,
    SPECS,
    SPO2,
    cpu_seconds,
    enroll_agent,
    periodic,
    rss_mib,
    show_agent_log,
    start_secure_broker,
    stop_agent,
    wait_sync,
)
from bench.edge_receipts import CountingReceipts
from edge_agent.emulation import DeviceProcess
from edge_agent.settings import PairedDevice
from rpm_core.keys import ServerKey

__all__ = ["rss_figures", "run_hours"]

STREAMED_READINGS_PER_SIM_S = 4  # HR + RR from the strap, SpO2 + pulse from the oximeter


def rss_figures(samples: list[tuple[float, float]]) -> dict[str, float | None]:
    """(hours of readings, RSS MiB) samples -> start (median of 10-20 %), end (median of the last 10 %),
    growth, and the least-squares slope after the first 10 % (MiB per 24 hours of readings)."""
    n = len(samples)
    if n < 10:
        return {"rss_mb_start": None, "rss_mb_end": None, "rss_growth_mb": None, "rss_slope_mb_per_24h": None}
    start = statistics.median(r for _, r in samples[n // 10 : max(n // 5, n // 10 + 1)])
    end = statistics.median(r for _, r in samples[n - max(1, n // 10) :])
    after = samples[n // 10 :]
    slope = statistics.linear_regression([h for h, _ in after], [r for _, r in after]).slope
    return {
        "rss_mb_start": round(start, 1),
        "rss_mb_end": round(end, 1),
        "rss_growth_mb": round(end - start, 2),
        "rss_slope_mb_per_24h": round(24 * slope, 2),
    }


async def run_hours(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    speed, hours = args.speed, args.hours
    run_s = hours * 3600 / speed
    broker = await asyncio.to_thread(start_secure_broker, work / "broker")
    devices = await DeviceProcess.start(SPECS)
    agent: subprocess.Popen[bytes] | None = None
    receipts: CountingReceipts | None = None
    server = ServerKey.generate()
    try:
        paired = tuple(PairedDevice(address=a, profile=PROFILES[n], name=n) for n, a in devices.addresses.items())
        enrolled = await asyncio.to_thread(
            enroll_agent, work, broker, server, devices=paired, ble_backend="emulated",
            emulated_hci=devices.hci, racp_poll_interval_s=60.0, receipt_timeout_s=60.0 * speed,
        )  # fmt: skip
        agent_id = enrolled.bundle.agent_id
        receipts = CountingReceipts(
            host="localhost",
            port=broker.port,
            ca=broker.layout.ca,
            password=broker.ingest_password,
            server=server,
            tokens={agent_id: enrolled.bundle.enrollment_token.get_secret_value()},
        ).start()
        log = (work / "agent.log").open("wb")
        command = [sys.executable, "-m", "bench.edge_accel", "--config", str(enrolled.config), "--speed", str(speed)]
        agent = subprocess.Popen(command, stdout=log, stderr=log)  # noqa: ASYNC220 - started once, not awaited

        def connected() -> bool:
            tally = receipts.tally(agent_id) if receipts else None
            status = tally.last_status if tally else None
            return bool(status and sum(d.connected for d in status.devices) >= 4)

        await asyncio.to_thread(wait_sync, connected, 120, "the agent connected to its devices")
        count = int(hours * 3600 * 1.05) + 60  # notifications; the run ends on readings delivered and time
        for name, uuid, payload in (("HR", "2a37", HR), ("SpO2", "2a5f", SPO2)):
            await devices.request(name, "stream", uuid=uuid, payload=payload.hex(), interval=1 / speed, count=count)
        driver = asyncio.create_task(periodic(devices, max(60.0 / speed, args.periodic_min_s)))
        await asyncio.sleep(min(5.0, run_s / 10))  # first batches, first receipts
        pid = agent.pid
        tally0 = receipts.tally(agent_id)
        delivered0 = tally0.readings if tally0 else 0
        cpu0, t0 = cpu_seconds(pid), time.monotonic()
        wanted = hours * 3600 * STREAMED_READINGS_PER_SIM_S
        samples: list[tuple[float, float]] = []  # (hours of readings delivered, RSS)
        anon: list[tuple[float, float]] = []  # (hours of readings delivered, RssAnon: heap and stacks)

        def delivered() -> int:
            tally = receipts.tally(agent_id) if receipts else None
            return (tally.readings if tally else 0) - delivered0

        while True:
            done = delivered()
            hours_done = done / (3600 * STREAMED_READINGS_PER_SIM_S)
            samples.append((hours_done, rss_mib(pid)))
            anon.append((hours_done, rss_mib(pid, "RssAnon")))
            if done >= wanted and time.monotonic() - t0 >= run_s:
                break
            if agent.poll() is not None:
                raise RuntimeError(f"the agent exited ({agent.returncode})")  # noqa: TRY301 - a bench fails loudly
            await asyncio.sleep(args.sample_s)
        elapsed, cpu = time.monotonic() - t0, cpu_seconds(pid) - cpu0
        driver.cancel()
        tally = receipts.tally(agent_id)
        readings = delivered()
        sim_s = elapsed * speed
        figures = rss_figures(samples)
        growth = figures["rss_growth_mb"]
        return {
            "hours": hours,
            "speed": speed,
            "real_seconds": round(elapsed, 1),
            "simulated_hours": round(sim_s / 3600, 2),
            "devices": len(SPECS),
            "rss_mb": round(max(r for _, r in samples), 1),
            "rss_mb_end": round(samples[-1][1], 1),
            **figures,
            **{k.replace("rss_", "rss_anon_", 1): v for k, v in rss_figures(anon).items()},
            "rss_growth_bound_mb": RSS_GROWTH_BOUND_MB,
            "within_bound": growth is not None and growth <= RSS_GROWTH_BOUND_MB,
            "cpu_pct_of_core": round(100 * cpu / elapsed, 2),
            "cpu_ms_per_reading": round(1000 * cpu / readings, 3) if readings else None,
            "readings_delivered": readings,
            "readings_per_sim_s": round(readings / sim_s, 2),
            "streamed_readings_per_sim_s_offered": STREAMED_READINGS_PER_SIM_S,
            "periodic_every_s": round(max(60.0 / speed, args.periodic_min_s), 2),
            "duplicates": tally.duplicates if tally else None,
            "rejected_messages": receipts.rejected,
            "rss_samples": [[round(h, 3), round(r, 1)] for h, r in samples[:: max(1, len(samples) // 48)]],
        }
    except BaseException:
        show_agent_log(work)
        raise
    finally:
        stop_agent(agent)
        if receipts is not None:
            receipts.stop()
        await devices.aclose()
        await asyncio.to_thread(broker.stop)

"""``bench.edge_agent --radio bluez``: the agent as a Pi runs it, without the emulated radio. Prints JSON.

The standard benchmark's agent runs the central's bumble host stack in its own process (the emulated
radio), work that ``bluetoothd`` does in another process on a Pi; bumble is about 11 MB of that
agent's resident set (``bench.edge_imports`` with ``edge_agent.emulation.backend``). This mode
separates it honestly: the agent is enrolled with ``ble_backend = "bluez"`` (bleak's BlueZ backend
over D-Bus: what a Pi imports) and the same six paired devices, and started as ``vigil edge run``.
This machine has no BlueZ, so the agent finds no adapter: it raises ``ble_adapter_down``, retries,
and meanwhile connects to the broker, registers and publishes its status. No reading flows, so the
figures are the agent's idle footprint with the Pi's modules loaded, not its footprint under load
(for that, the emulated run: its process holds the readings' runtime state as well, with bumble).
``adapter_down`` says whether the agent did report the missing adapter (else the figure is not
what it claims to be).
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
from pathlib import Path
from typing import Any

from bench.edge_agent import SPECS, enroll_agent, measure, show_agent_log, start_secure_broker, stop_agent, wait_sync
from edge_agent.settings import PairedDevice
from rpm_core.keys import ServerKey
from vigil_testkit.agent_harness import ReceiptServer

__all__ = ["run_bluez"]


async def run_bluez(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    broker = await asyncio.to_thread(start_secure_broker, work / "broker")
    agent: subprocess.Popen[bytes] | None = None
    server = ServerKey.generate()
    try:
        paired = tuple(
            PairedDevice(address=f"E0:00:00:00:00:{i:02X}", profile=s["profile"], name=s["name"])
            for i, s in enumerate(SPECS, 1)
        )
        enrolled = await asyncio.to_thread(enroll_agent, work, broker, server, devices=paired, ble_backend="bluez")
        agent_id = enrolled.bundle.agent_id
        receipts = ReceiptServer(broker, server, {agent_id: enrolled.bundle.enrollment_token.get_secret_value()})
        receipts.start()
        log = (work / "agent.log").open("wb")
        command = [sys.executable, "-m", "vigil_cli", "edge", "run", "--config", str(enrolled.config)]
        agent = subprocess.Popen(command, stdout=log, stderr=log)  # noqa: ASYNC220 - started once, not awaited

        def reported() -> bool:
            record = receipts.record(agent_id)
            return bool(record and record.statuses)

        await asyncio.to_thread(wait_sync, reported, 60, "the agent published its status")
        await asyncio.sleep(5)  # warm-up
        online = await measure(agent.pid, args.seconds)
        record = receipts.record(agent_id)
        receipts.stop()
        return {
            "radio": "bluez (no adapter on this machine: idle, no readings)",
            "seconds": args.seconds,
            "devices": len(SPECS),
            "rss_mb": round(online["rss_mb"], 1),
            "rss_mb_end": round(online["rss_mb_end"], 1),
            "rss_anon_mb": round(online["rss_anon_mb"], 1),
            "cpu_pct_of_core": round(online["cpu_pct_of_core"], 2),
            "adapter_down": bool(record and any("ble_adapter_down" in s.alarms for s in record.statuses)),
            "statuses_received": len(record.statuses) if record else 0,
        }
    except BaseException:
        show_agent_log(work)
        raise
    finally:
        stop_agent(agent)
        await asyncio.to_thread(broker.stop)

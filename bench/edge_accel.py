"""The edge agent on an accelerated clock, for ``bench.edge_agent --hours``.

:class:`AcceleratedClock` is a :class:`rpm_core.clock.Clock` whose time runs ``speed`` times faster
than the machine's from the moment it is made: ``now()`` (timestamps of readings, receipts, the
outbox) and ``monotonic()`` (the uplink's batch age, status interval and receipt timeout) both.
What the agent awaits with asyncio (BLE and MQTT timeouts, reconnect backoff) stays in real time:
those are about the radio and the network, not about how many hours of readings pass.

``python -m bench.edge_accel --config agent.toml --speed 60`` runs the agent exactly as
``vigil edge run`` does (same settings, same modules imported, SIGTERM to stop) but with this
clock: what it imports stays comparable with ``vigil edge run``, so its RSS is.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from rpm_core.clock import ensure_utc

__all__ = ["AcceleratedClock", "main"]


class AcceleratedClock:
    """``real`` is the machine's monotonic clock (a parameter for tests)."""

    def __init__(
        self, speed: float, *, start: datetime | None = None, real: Callable[[], float] = time.monotonic
    ) -> None:
        if speed <= 0:
            raise ValueError("speed must be > 0")
        self.speed = speed
        self._real = real
        self._t0 = real()
        self._start = ensure_utc(start) if start is not None else datetime.now(UTC)

    def elapsed(self) -> float:
        """Simulated seconds since the clock was made."""
        return (self._real() - self._t0) * self.speed

    def now(self) -> datetime:
        return self._start + timedelta(seconds=self.elapsed())

    def monotonic(self) -> float:
        return self.elapsed()


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", type=Path, required=True)
    ap.add_argument("--speed", type=float, required=True, help="simulated seconds per real second")
    ap.add_argument("--ble", default=None)
    ap.add_argument("--emulated-hci", default=None)
    args = ap.parse_args(argv)

    import edge_agent.run  # noqa: F401 - with vigil_cli.main, what `vigil edge run` loads, so the RSS compares
    import vigil_cli.main  # noqa: F401
    from edge_agent.agent import Agent
    from edge_agent.identity import AgentIdentity
    from edge_agent.settings import load_edge_settings

    settings = load_edge_settings(args.config, ble_backend=args.ble, emulated_hci=args.emulated_hci)
    logging.basicConfig(
        level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr, force=True
    )
    logging.getLogger("edge_agent").setLevel(settings.log_level.upper())
    identity = AgentIdentity.load(settings.enrollment_dir, org=settings.org_id, agent=settings.agent)
    agent = Agent(settings, identity, clock=AcceleratedClock(args.speed))

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await agent.run(stop)

    asyncio.run(run())


if __name__ == "__main__":
    main()

"""The running agent: one composition of outbox, state, BLE sessions, uplink and MQTT link.

Everything is built here from the settings and the identity that ``vigil edge run`` loaded once;
the radio can be injected (tests hand in an emulated one). :meth:`Agent.run` returns when ``stop``
is set (SIGTERM) after saying goodbye to the server, or raises what ended it: an outbox failure,
for example, ends the process so systemd restarts it (``Restart=always``).

Beside its own uplink the agent delivers the undelivered readings of identities that ``vigil edge
enroll --force`` retired (:mod:`edge_agent.retired`), each over its own connection as that
identity; a retired identity that cannot be delivered is logged and left for ``vigil edge outbox
adopt``, never a reason to stop the agent.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import AsyncIterator, Coroutine
from datetime import timedelta
from importlib import metadata
from pathlib import Path
from typing import Any, Final

from edge_agent.ble import DeviceManager, DeviceSession, Radio, SessionOptions, open_radio
from edge_agent.errors import EnrollmentError, OutboxFull
from edge_agent.identity import AgentIdentity
from edge_agent.mqtt import MqttLink, MqttOptions
from edge_agent.outbox import AsyncOutbox
from edge_agent.retired import RetiredIdentity, deliver_retired, list_retired
from edge_agent.settings import EdgeSettings, PairedDevice
from edge_agent.state import AgentState
from edge_agent.uplink import Uplink, UplinkOptions
from rpm_core.backoff import BackoffPolicy
from rpm_core.clock import Clock, SystemClock
from rpm_core.errors import VigilError
from rpm_core.topics import Topic

__all__ = ["Agent", "agent_version"]

_log = logging.getLogger(__name__)
_PERSIST_EVERY_S: Final = 15.0
Endpoint = tuple[str, int, str]  # broker host, port, TLS server name


def agent_version() -> str:
    try:
        return metadata.version("vigil-rpm")
    except metadata.PackageNotFoundError:
        return "0+unknown"


class Agent:
    def __init__(
        self,
        settings: EdgeSettings,
        identity: AgentIdentity,
        *,
        clock: Clock | None = None,
        radio: Radio | None = None,
        version: str | None = None,
    ) -> None:
        """Build outside the event loop (``version`` defaults to the installed package's, read from disk)."""
        if not settings.enrolled or settings.broker_host is None or settings.broker_server_name is None:
            raise EnrollmentError("this agent is not enrolled (vigil edge enroll --bundle FILE)")
        self.settings = settings
        self.identity = identity
        self.clock = clock or SystemClock()
        self._radio = radio
        self.version = version or agent_version()
        self._broker: Endpoint = (settings.broker_host, settings.broker_port, settings.broker_server_name)
        self.uplink: Uplink | None = None
        self.state: AgentState | None = None

    @contextlib.asynccontextmanager
    async def _open_radio(self) -> AsyncIterator[Radio]:
        if self._radio is not None:
            yield self._radio
        else:
            async with open_radio(self.settings) as radio:
                yield radio

    async def run(self, stop: asyncio.Event | None = None) -> None:
        s, ident = self.settings, self.identity
        retired = await asyncio.to_thread(list_retired, s.state_dir)
        outbox = await AsyncOutbox.open(
            s.outbox_path,
            key=ident.outbox_key,
            agent=ident.agent,
            kid=ident.keys.public().kex_kid,
            clock=self.clock,
            max_readings=s.outbox_max_readings,
        )
        try:
            state = self.state = AgentState(
                s.devices, clock=self.clock, clock_skew_threshold_s=s.clock_skew_threshold_s
            )
            uplink = self.uplink = Uplink(
                identity=ident, options=self._uplink_options(self._broker), outbox=outbox, state=state, clock=self.clock
            )
            mqtt = self._mqtt_options(ident, self._broker)
            link = MqttLink(mqtt, listener=uplink, will=uplink.will, loop=asyncio.get_running_loop())
            uplink.publisher = link
            await outbox.save_devices(state.devices())
            async with self._open_radio() as radio:
                manager = self._manager(radio, outbox, state, uplink)
                link.start()
                _log.info("agent %s running with %d paired device(s)", ident.agent, len(s.devices))
                try:
                    jobs = [uplink.run(), manager.run(), self._persist(outbox, state)]
                    if retired:
                        jobs.append(self._deliver_retired(retired))
                    await _until(stop, *jobs)
                finally:
                    await uplink.goodbye()
                    await link.stop()
                    await self._save(outbox, state)
        finally:
            await outbox.close()

    def _uplink_options(self, broker: Endpoint) -> UplinkOptions:
        s = self.settings
        host, port, server_name = broker
        return UplinkOptions(
            broker_host=host,
            broker_port=port,
            broker_server_name=server_name,
            agent_version=self.version,
            batch_max_readings=s.batch_max_readings,
            batch_max_age_s=s.batch_max_age_s,
            max_inflight_envelopes=s.max_inflight_envelopes,
            receipt_timeout_s=s.receipt_timeout_s,
            no_subscriber_retry_s=s.no_subscriber_retry_s,
            status_interval_s=s.status_interval_s,
            registration_retry_s=s.registration_retry_s,
        )

    def _mqtt_options(self, ident: AgentIdentity, broker: Endpoint) -> MqttOptions:
        s = self.settings
        host, port, server_name = broker
        return MqttOptions(
            host=host,
            port=port,
            server_name=server_name,
            ca_pem=ident.ca_pem,
            client_id=ident.agent,
            username=ident.mqtt_username,
            password=ident.mqtt_password,
            subscriptions=(str(Topic.receipts(ident.org, ident.agent)), str(Topic.config(ident.org, ident.agent))),
            keepalive_s=s.mqtt_keepalive_s,
            policy=BackoffPolicy(base_s=0.5, factor=2.0, cap_s=s.mqtt_backoff_cap_s),
        )

    def _manager(self, radio: Radio, outbox: AsyncOutbox, state: AgentState, uplink: Uplink) -> DeviceManager:
        s = self.settings
        options = SessionOptions(
            zone=s.zone,
            clock_skew_threshold=timedelta(seconds=s.clock_skew_threshold_s),
            racp_poll_interval_s=s.racp_poll_interval_s,
            battery_poll_interval_s=s.battery_poll_interval_s,
        )

        def session(paired: PairedDevice) -> DeviceSession:
            return DeviceSession(
                paired,
                radio=radio,
                agent=self.identity.agent,
                outbox=outbox,
                state=state,
                clock=self.clock,
                options=options,
                on_stored=uplink.readings_added,
            )

        policy = BackoffPolicy(base_s=0.5, factor=2.0, cap_s=s.ble_backoff_cap_s)
        return DeviceManager(radio=radio, devices=s.devices, session=session, state=state, policy=policy)

    async def _deliver_retired(self, paths: list[Path]) -> None:
        """Deliver every retired identity's outbox (each as that identity), then idle with the other jobs."""
        await asyncio.gather(*(self._deliver_one(p) for p in paths))
        await asyncio.Event().wait()  # a job of `_until` never returns on its own

    async def _deliver_one(self, path: Path) -> None:
        try:
            retired = await asyncio.to_thread(RetiredIdentity.load, path)
            ident = await asyncio.to_thread(AgentIdentity.load, path, org=retired.org, agent=retired.agent)
            own = self._broker
            broker: Endpoint = (
                retired.broker_host or own[0],
                retired.broker_port or own[1],
                retired.broker_server_name or own[2],
            )
            _log.info("delivering the undelivered readings of retired identity %s", retired.agent)
            await deliver_retired(
                retired,
                ident,
                uplink_options=self._uplink_options(broker),
                mqtt_options=self._mqtt_options(ident, broker),
                clock=self.clock,
                max_readings=self.settings.outbox_max_readings,
            )
        except (VigilError, OSError) as exc:
            # Its readings stay where they are (see `vigil edge status`); the patient's own agent runs on.
            _log.warning("retired identity in %s not delivered: %s (vigil edge outbox adopt)", path.name, exc)

    async def _persist(self, outbox: AsyncOutbox, state: AgentState) -> None:
        """Keep the local view of ``vigil edge status`` current: on change and every few seconds."""
        while True:
            seen = state.version
            await self._save(outbox, state)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(_PERSIST_EVERY_S):
                    await state.changed(seen)

    async def _save(self, outbox: AsyncOutbox, state: AgentState) -> None:
        """Persist the local view; on a full disk it waits (a reason to alarm, never to stop the agent)."""
        try:
            await self._save_state(outbox, state)
        except OutboxFull:
            if "disk_full" not in state.alarms:
                _log.error("disk full: the local status (vigil edge status) is not saved until there is room")
            state.raise_alarm("disk_full")

    async def _save_state(self, outbox: AsyncOutbox, state: AgentState) -> None:
        await outbox.save_devices(state.devices())
        await outbox.save_state("alarms", sorted(state.alarms))
        await outbox.save_state("counters", dict(state.counters))
        await outbox.save_state(
            "agent",
            {
                "pid": os.getpid(),
                "version": self.version,
                "broker_connected": state.broker_connected,
                "saved_at": self.clock.now().isoformat(),
            },
        )


async def _until(stop: asyncio.Event | None, *jobs: Coroutine[Any, Any, None]) -> None:
    """Run ``jobs`` until one of them fails or ``stop`` is set; then cancel the rest."""
    tasks = [asyncio.create_task(job) for job in jobs]
    stopper = asyncio.create_task((stop or asyncio.Event()).wait())
    try:
        done, _ = await asyncio.wait([*tasks, stopper], return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            if task is not stopper:
                task.result()  # a job never returns on its own: this raises what ended it
    finally:
        for task in [*tasks, stopper]:
            task.cancel()
        await asyncio.gather(*tasks, stopper, return_exceptions=True)

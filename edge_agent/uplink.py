"""The uplink: from the outbox to sealed envelopes on the broker, and receipts back into the outbox.

Registration first
    Until the server has accepted this agent's registration, the agent publishes nothing but its
    registration (:func:`rpm_core.enrollment.seal_registration` on ``.../up/status``): on every
    connect and again every ``registration_retry_s``. Devices keep measuring meanwhile and their
    readings keep buffering in the outbox (bounded like any outage). The first verified receipt or
    config message signed by a server key from the bundle proves acceptance; that is persisted, the
    spent enrollment token deleted from the outbox in the same transaction, and the agent goes
    online (status, then readings). A registered agent never registers again, so it never needs
    the token again.

Readings
    Envelopes carry up to ``batch_max_readings`` readings in sequence order plus the pending gaps
    (overflowed ranges); a partial batch waits until its oldest reading is ``batch_max_age_s`` old.
    At most ``max_inflight_envelopes`` envelopes may wait for a receipt. A broker PUBACK deletes
    nothing: only a verified receipt (``through``: everything ``<= through`` is committed) does.
    After a reconnect, or when no receipt came for ``receipt_timeout_s``, everything unreceipted is
    sent again from the outbox; the server drops duplicates by sequence number. A PUBACK with
    reason 0x10 (no matching subscribers: the broker dropped the envelope, as Mosquitto 2.0.11 does
    after a restart until ingest has subscribed again) brings that resend forward to
    ``no_subscriber_retry_s``, doubling while it repeats.

Status
    A sealed :class:`rpm_core.status.AgentStatus` on connect, on every change of devices or alarms
    (at most once a second), and every ``status_interval_s``; the MQTT last will is the same status
    sealed with ``online = false``, refreshed each time.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import timedelta
from typing import Final

from edge_agent.errors import BrokerDisconnected, BrokerError, EnrollmentError, OutboxFull
from edge_agent.identity import AgentIdentity
from edge_agent.outbox.store import QUARANTINED
from edge_agent.ports import Outbox, Publisher
from edge_agent.state import AgentState
from rpm_core.clock import Clock
from rpm_core.downlink import verify_downlink, verify_receipt
from rpm_core.enrollment import seal_registration
from rpm_core.envelope import ReadingBatch, seal_batch
from rpm_core.errors import ContractError, EnvelopeError
from rpm_core.status import AgentStatus, seal_status
from rpm_core.topics import Kind, Topic

__all__ = ["Uplink", "UplinkOptions"]

_log = logging.getLogger(__name__)
_MAX_GAPS: Final = 64
_STATUS_DEBOUNCE_S: Final = 1.0
_FULL_PAUSE_S: Final = 1.0


@dataclass(frozen=True, slots=True)
class UplinkOptions:
    broker_host: str
    broker_port: int
    broker_server_name: str
    agent_version: str
    batch_max_readings: int = 20
    batch_max_age_s: float = 2.0
    max_inflight_envelopes: int = 8
    receipt_timeout_s: float = 60.0
    no_subscriber_retry_s: float = 2.0
    status_interval_s: float = 60.0
    registration_retry_s: float = 30.0


@dataclass(frozen=True, slots=True)
class _Sent:
    first: int
    last: int
    at: float  # monotonic


class Uplink:
    """Implements :class:`edge_agent.mqtt.LinkListener`; :meth:`run` drives everything else."""

    def __init__(
        self,
        *,
        identity: AgentIdentity,
        options: UplinkOptions,
        outbox: Outbox,
        state: AgentState,
        clock: Clock,
    ) -> None:
        self.identity = identity
        self.options = options
        self.publisher: Publisher | None = None
        self._outbox = outbox
        self._state = state
        self._clock = clock
        self._wake = asyncio.Event()
        self._inbox: asyncio.Queue[tuple[str, bytes]] = asyncio.Queue()
        self._generation = 0
        self._connected = False
        # Moves on every connect and disconnect: a batch prepared across one (its awaits let the
        # link's events in) is not recorded as sent, or it would fill the window after the rewind.
        self._epoch = 0
        self.registered = False
        self.receipted_through = 0
        self._sent_through = 0
        self._inflight: list[_Sent] = []
        self._registration_at: float | None = None
        self._status_at: float | None = None
        self._status_version = -1
        self._age_deadline: float | None = None
        self._will: tuple[str, bytes] | None = None
        self.resends = 0
        self.no_subscribers = 0
        self._nosub_at: float | None = None  # resend the unreceipted then (after a PUBACK 0x10)
        self._nosub_streak = 0  # 0x10 answers since the last receipt: the retry doubles with each
        # Set whenever a receipt moves ``receipted_through`` forward (waited on by whoever drains an outbox).
        self.receipted = asyncio.Event()

    # -- events (LinkListener, the sessions, the state) -----------------------------------------

    def on_connected(self, generation: int) -> None:
        self._epoch += 1
        self._generation, self._connected = generation, True
        self._registration_at = self._status_at = None
        self._state.broker_connected = True
        self._state.clear_alarm("broker_unreachable")
        self._wake.set()

    def on_disconnected(self, error: BrokerError) -> None:
        self._epoch += 1
        if self._connected:
            _log.info("uplink down (%s); %d envelope(s) will be sent again", error.reason, len(self._inflight))
        self._connected = False
        self._state.broker_connected = False
        self._rewind()
        if isinstance(error, BrokerDisconnected) and error.taken_over:
            _log.error(
                "another client connected with this agent's client id %s (%s): is this identity running on "
                "a second device?",
                self.identity.agent,
                error.name,
            )
            self._state.raise_alarm("client_id_takeover", latch=True)
        else:
            self._state.raise_alarm("broker_unreachable")

    def on_message(self, topic: str, payload: bytes) -> None:
        self._inbox.put_nowait((topic, payload))
        self._wake.set()

    def on_no_subscribers(self) -> None:
        """A readings envelope was dropped by the broker for want of a subscriber (PUBACK 0x10).

        Mosquitto 2.0.11 does not keep shared subscriptions over a restart, so until ingest has
        subscribed again every envelope is dropped; no receipt will come for it. Send the
        unreceipted readings again after ``no_subscriber_retry_s`` (doubling while it repeats, at
        most ``receipt_timeout_s``) instead of waiting the whole receipt timeout.
        """
        self.no_subscribers += 1
        if self._nosub_at is None:
            o = self.options
            delay = min(o.receipt_timeout_s, o.no_subscriber_retry_s * 2 ** min(self._nosub_streak, 16))
            self._nosub_at = self._clock.monotonic() + delay
            self._nosub_streak += 1
        self._wake.set()

    def readings_added(self) -> None:
        self._wake.set()

    def will(self) -> tuple[str, bytes] | None:
        """The last will for the next connection (read from the MQTT thread)."""
        return self._will

    def _rewind(self) -> None:
        self._nosub_at = None
        self._inflight.clear()
        self._sent_through = self.receipted_through

    # -- the main task --------------------------------------------------------------------------

    async def run(self) -> None:
        stats = await self._outbox.stats()
        self.registered = stats.registered_at is not None
        self.receipted_through = self._sent_through = stats.last_receipt
        await self._prepare_will()
        watcher = asyncio.create_task(self._watch_state())
        try:
            while True:
                await self._sleep()
                try:
                    while not self._inbox.empty():
                        await self._downlink(*self._inbox.get_nowait())
                    if self._connected:
                        await self._step()
                except OutboxFull:
                    # A receipt that cannot delete, a quarantine that cannot move: nothing is lost by
                    # waiting (the server sends the receipt again after the resend), everything by
                    # exiting. Retried after a pause, not in a busy loop.
                    self._state.raise_alarm("disk_full")
                    _log.error("disk full: the uplink cannot update the outbox; retrying in %.0f s", _FULL_PAUSE_S)
                    self._rewind()
                    await asyncio.sleep(_FULL_PAUSE_S)
        finally:
            watcher.cancel()

    async def _watch_state(self) -> None:
        seen = self._state.version
        while True:
            await self._state.changed(seen)
            seen = self._state.version
            self._wake.set()

    async def _sleep(self) -> None:
        now = self._clock.monotonic()
        deadlines = [d for d in self._deadlines() if d is not None]
        timeout = max(0.0, min(deadlines) - now) if deadlines else None
        try:
            async with asyncio.timeout(timeout):
                await self._wake.wait()
        except TimeoutError:
            pass
        self._wake.clear()

    def _deadlines(self) -> list[float | None]:
        if not self._connected:
            return []
        o = self.options
        if not self.registered:
            return [None if self._registration_at is None else self._registration_at + o.registration_retry_s]
        status = None
        if self._status_at is not None:
            status = self._status_at + o.status_interval_s
            if self._state.version != self._status_version:  # a change waiting for the debounce
                status = min(status, self._status_at + _STATUS_DEBOUNCE_S)
        receipt = self._inflight[0].at + o.receipt_timeout_s if self._inflight else None
        return [status, receipt, self._age_deadline, self._nosub_at]

    async def _step(self) -> None:
        now = self._clock.monotonic()
        if not self.registered:
            if self._registration_at is None or now - self._registration_at >= self.options.registration_retry_s:
                await self._register()
            return
        if self._status_due(now):
            await self.publish_status(online=True)
        if self._inflight and now - self._inflight[0].at >= self.options.receipt_timeout_s:
            _log.warning(
                "no receipt for %.0f s; sending the unreceipted readings again", self.options.receipt_timeout_s
            )
            self.resends += 1
            self._rewind()
        elif self._nosub_at is not None and now >= self._nosub_at:
            _log.warning("the broker had no subscriber for our readings (PUBACK 0x10); sending them again")
            self.resends += 1
            self._rewind()
        await self._fill_window()

    def _status_due(self, now: float) -> bool:
        if self._status_at is None or now - self._status_at >= self.options.status_interval_s:
            return True
        return self._state.version != self._status_version and now - self._status_at >= _STATUS_DEBOUNCE_S

    def _publish(self, topic: Topic, payload: bytes) -> None:
        if self.publisher is not None:
            self.publisher.publish(str(topic), payload, generation=self._generation)

    async def _register(self) -> None:
        o = self.options
        token = await self._outbox.enrollment_token() or self.identity.enrollment_token
        if token is None:
            raise EnrollmentError("not registered and no enrollment token left; enroll again with a new bundle")
        bundle = self.identity.registration_bundle(
            host=o.broker_host, port=o.broker_port, server_name=o.broker_server_name, token=token
        )
        topic, data = seal_registration(bundle, self.identity.keys, agent_version=o.agent_version)
        self._publish(topic, data)
        self._registration_at = self._clock.monotonic()
        _log.info("registration sent; buffering readings until the server accepts it")

    # -- readings -------------------------------------------------------------------------------

    async def _fill_window(self) -> None:
        o = self.options
        self._age_deadline = None
        epoch = self._epoch
        while len(self._inflight) < o.max_inflight_envelopes and epoch == self._epoch and self._connected:
            after = max(self._sent_through, self.receipted_through)
            backlog = await self._outbox.backlog(after, o.batch_max_readings)
            if backlog.count == 0:
                return
            if backlog.count < o.batch_max_readings and backlog.oldest_queued_at is not None:
                wait = (
                    backlog.oldest_queued_at + timedelta(seconds=o.batch_max_age_s) - self._clock.now()
                ).total_seconds()
                if 0 < wait <= o.batch_max_age_s:  # (a wall clock that jumped back does not hold a batch)
                    self._age_deadline = self._clock.monotonic() + wait
                    return
            await self._send_batch(after)

    async def _send_batch(self, after: int) -> None:
        epoch = self._epoch
        readings = await self._outbox.fetch(after, self.options.batch_max_readings)
        gaps = (await self._outbox.gaps())[:_MAX_GAPS]
        if epoch != self._epoch or not self._connected:
            # The link dropped (and maybe came back) while this batch was read: the rewind has
            # reset the window; recording this batch as in flight would fill it with envelopes
            # never published on the new connection, and nothing would be sent until the receipt
            # timeout. The next step sends from the rewound position.
            return
        if any(g.reason == QUARANTINED and g.last > self.receipted_through for g in gaps):
            # A stored row no longer opened: the outbox moved it aside and recorded it as a gap
            # (sent below); the alarm makes the next status say so.
            self._state.raise_alarm("outbox_quarantine", latch=True)
        if readings:
            first, last = readings[0].seq, readings[-1].seq
        else:
            # Every row fetched was quarantined: the gaps alone must still reach the server, or a
            # receipt could never pass them when no reading follows.
            pending = [g for g in gaps if g.last > after]
            if not pending:
                return
            first, last = pending[0].first, max(g.last for g in pending)
        ident = self.identity
        batch = ReadingBatch(ident.org, ident.agent, self._clock.now(), tuple(readings), gaps)
        topic, data = seal_batch(batch, agent=ident.keys, server=ident.server)
        self._publish(topic, data)
        self._inflight.append(_Sent(first, last, self._clock.monotonic()))
        self._sent_through = max(self._sent_through, last)

    # -- downlink -------------------------------------------------------------------------------

    async def _downlink(self, topic_name: str, payload: bytes) -> None:
        ident = self.identity
        try:
            topic = self._own_topic(topic_name)
            if topic.kind is Kind.RECEIPTS:
                receipt = verify_receipt(payload, topic=topic, trusted=ident.trusted)
                await self._accepted("receipt")
                await self._receipt(receipt.through)
            elif topic.kind is Kind.CONFIG:
                verify_downlink(payload, topic=topic, trusted=ident.trusted)
                await self._accepted("config")
                _log.info("config message received (verified; no settings are pushed in this version)")
        except (EnvelopeError, ContractError) as exc:
            self._state.count("downlink_rejected")
            _log.warning("rejected a downlink message on %s: %s", topic_name, exc.reason)

    def _own_topic(self, name: str) -> Topic:
        topic = Topic.parse(name)
        if (topic.org, topic.agent) != (self.identity.org, self.identity.agent):
            raise ContractError("downlink for another agent")
        return topic

    async def _accepted(self, via: str) -> None:
        if not self.registered:
            await self._outbox.set_registered(self._clock.now())
            self.registered = True
            self._status_at = None
            _log.info("registration accepted (%s); going online", via)

    async def _receipt(self, through: int) -> None:
        if through <= self.receipted_through:
            return
        stats = await self._outbox.stats()
        if through > stats.last_allocated:
            _log.warning("receipt through %d is beyond the last sequence allocated (%d)", through, stats.last_allocated)
            through = stats.last_allocated
        deleted = await self._outbox.acknowledge(through, self._clock.now())
        self.receipted_through = max(self.receipted_through, through)
        self._sent_through = max(self._sent_through, through)
        self._inflight = [s for s in self._inflight if s.last > through]
        self._nosub_streak = 0  # ingest is there again
        self.receipted.set()
        _log.debug("receipt through %d: %d reading(s) delivered", through, deleted)

    # -- status ---------------------------------------------------------------------------------

    async def _status(self, *, online: bool) -> AgentStatus:
        stats = await self._outbox.stats()
        return AgentStatus(
            org=self.identity.org,
            agent=self.identity.agent,
            online=online,
            sent_at=self._clock.now(),
            agent_version=self.options.agent_version,
            outbox_depth=stats.depth,
            outbox_oldest=stats.oldest_queued_at,
            last_receipt=stats.last_receipt,
            devices=self._state.devices(),
            # Dropped readings stay an alarm until the server has receipted past the gap.
            alarms=self._state.alarms | ({"outbox_overflow"} if stats.gaps else set()),
        )

    async def _prepare_will(self) -> None:
        status = await self._status(online=False)
        topic, data = seal_status(status, agent=self.identity.keys, server=self.identity.server)
        self._will = (str(topic), data)

    async def publish_status(self, *, online: bool) -> None:
        version, epoch = self._state.version, self._epoch
        status = await self._status(online=online)
        if epoch != self._epoch:  # the link changed meanwhile: the new connection sends its own status
            return
        topic, data = seal_status(status, agent=self.identity.keys, server=self.identity.server)
        self._publish(topic, data)
        self._status_at, self._status_version = self._clock.monotonic(), version
        await self._prepare_will()

    async def goodbye(self) -> None:
        """Before a clean shutdown: tell the server we go offline (the will covers crashes)."""
        if self._connected and self.registered:
            await self.publish_status(online=False)

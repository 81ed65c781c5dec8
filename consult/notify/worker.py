"""The delivery worker: claims due notifications, sends them, records the outcome.

Each round (:meth:`Worker.run_once`):

1. **Recover** the rows of dead workers (``store.notification_delivery.orphaned``): an attempt
   that died before its commit point is retried at once (nothing reached the provider); one that
   died after it is resent with the same idempotency key when the channel's provider drops
   duplicates, else as ``notify_unknown_outcome`` says (``resend``: at least once; ``fail``: at
   most once, the row ends ``failed`` with ``outcome_unknown``).
2. **Claim** up to ``batch`` due rows with ``FOR UPDATE SKIP LOCKED`` and decide each
   (``policy.decide``): send (state ``sending``, a new attempt, its acknowledgement link made),
   hold back for quiet hours, or cancel. COMMIT.
3. **Send** each: render (``templates``), call the channel, which calls back at its commit point
   (phase ``committing``, COMMIT), then record ``sent``/``delivered``, a retry after
   ``backoff_delay(error, attempt)`` (exponential, with jitter), or ``failed`` (a permanent error,
   or the last attempt). Anything raised while handling one notification is that notification's
   failure (``internal_error``), never the worker's.

The worker holds its advisory lock on the one connection it works with; if that connection is
lost the worker reconnects under a new key (its unfinished rows are then recovered like a dead
worker's). Logs carry ids and error codes only.
"""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Final

from consult.notify.channels import Channel, Outgoing
from consult.notify.errors import DeliveryError, NotifyError
from consult.notify.links import AckClaim, AckLinkSigner, ack_path
from consult.notify.policy import Cancel, Defer, decide
from consult.notify.templates import Links, render
from rpm_core.backoff import BackoffPolicy, backoff_delay
from rpm_core.clock import Clock
from store import ack_links
from store import notification_delivery as delivery
from store.ack_links import AckLinkRow
from store.channels import NOTIFICATIONS_CHANNEL
from store.connection import Connection, connect, listen, translate_errors, wait_for_notification
from store.errors import DatabaseUnavailable
from store.notification_delivery import Candidate, Orphan

__all__ = ["RoundStats", "Worker", "WorkerOptions"]

log = logging.getLogger(__name__)

_RECONNECT: Final = BackoffPolicy(base_s=0.5, factor=2.0, cap_s=30.0)


@dataclass(frozen=True, slots=True, kw_only=True)
class WorkerOptions:
    public_url: str
    batch: int = 20
    poll_interval_s: float = 5.0
    max_attempts: int = 8
    backoff: BackoffPolicy = field(default_factory=lambda: BackoffPolicy(base_s=30.0, factor=2.0, cap_s=3600.0))
    jitter: float = 0.2
    lease_s: float = 600.0
    unknown_outcome: str = "resend"  # 'resend' | 'fail'
    ack_ttl_s: int = 86_400
    text_channels: tuple[str, ...] = ("in_app",)


@dataclass(slots=True)
class RoundStats:
    recovered: int = 0
    sent: int = 0
    delivered: int = 0
    retried: int = 0
    failed: int = 0
    deferred: int = 0
    canceled: int = 0
    lost: int = 0  # attempts whose row was recovered by another worker meanwhile

    def add(self, other: RoundStats) -> None:
        for name in self.__slots__:
            setattr(self, name, getattr(self, name) + getattr(other, name))


@dataclass(frozen=True, slots=True)
class _Job:
    c: Candidate
    attempt_id: str
    attempt_no: int
    link: AckLinkRow | None


class Worker:
    def __init__(
        self,
        database_url: str,
        options: WorkerOptions,
        channels: Mapping[str, Channel],
        signer: AckLinkSigner,
        *,
        clock: Clock,
        jitter_source: Callable[[], float] = random.random,
        stop: threading.Event | None = None,
    ) -> None:
        self._url = database_url
        self._o = options
        self._channels = dict(channels)
        self._signer = signer
        self._clock = clock
        self._draw = jitter_source
        self.stop = stop or threading.Event()
        self._conn: Connection | None = None
        self.worker_key: int | None = None
        self.stats = RoundStats()

    # -- connection ------------------------------------------------------------------------------

    def connect(self) -> None:
        self.close()
        conn = connect(self._url, application_name="vigil-notify")
        try:
            self.worker_key = delivery.register_worker(conn)
            listen(conn, NOTIFICATIONS_CHANNEL)
        except BaseException:
            conn.close()
            raise
        self._conn = conn
        log.info("notify worker %d connected (channels: %s)", self.worker_key, ",".join(sorted(self._channels)))

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()

    def close_channels(self) -> None:
        for ch in self._channels.values():
            ch.close()

    @property
    def conn(self) -> Connection:
        if self._conn is None:
            raise RuntimeError("the worker is not connected")
        return self._conn

    # -- rounds ----------------------------------------------------------------------------------

    def run_once(self) -> RoundStats:
        """Recover, then claim and send until nothing is due (or stop is set)."""
        stats = RoundStats()
        self._recover(stats)
        while not self.stop.is_set():
            jobs, claimed = self._claim(stats)
            for job in jobs:
                self._process(job, stats)
            if claimed < self._o.batch:
                break
        self.stats.add(stats)
        return stats

    def run(self) -> None:
        """Work until ``stop`` is set; reconnects (with backoff) when the database goes away."""
        failures = 0
        while not self.stop.is_set():
            try:
                if self._conn is None:
                    self.connect()
                with translate_errors():
                    self.run_once()
                    failures = 0
                    self._wait()
            except DatabaseUnavailable:
                self.close()
                delay = backoff_delay(None, failures, policy=_RECONNECT)
                failures += 1
                log.warning("database unavailable; reconnecting in %.1fs", delay)
                self.stop.wait(delay)
        self.close_channels()
        self.close()

    def _wait(self) -> None:
        timeout = self._o.poll_interval_s
        nxt = delivery.next_due(self.conn, channels=list(self._channels))
        if nxt is not None:
            timeout = max(0.0, min(timeout, (nxt - self._clock.now()).total_seconds()))
        if timeout > 0:
            wait_for_notification(self.conn, min(timeout, 1.0) if self.stop.is_set() else timeout)

    # -- recovery --------------------------------------------------------------------------------

    def _recover(self, stats: RoundStats) -> None:
        now = self._clock.now()
        with self.conn.transaction():
            for o in delivery.orphaned(self.conn, now):
                self._recover_one(o, now)
                stats.recovered += 1

    def _recover_one(self, o: Orphan, now: datetime) -> None:
        if o.send_phase == "prepared":
            delivery.recover(self.conn, o, now, outcome="interrupted", requeue=True, error="worker_lost")
            log.info("notification %d: attempt interrupted before sending; retrying", o.outbox_id)
            return
        channel = self._channels.get(o.channel)
        resend = (channel is not None and channel.idempotent) or self._o.unknown_outcome == "resend"
        delivery.recover(self.conn, o, now, outcome="unknown", requeue=resend, error="outcome_unknown")
        log.warning(
            "notification %d: worker died after the commit point; %s",
            o.outbox_id,
            "resending with the same idempotency key" if resend else "marked failed (outcome unknown)",
        )

    # -- claims ----------------------------------------------------------------------------------

    def _claim(self, stats: RoundStats) -> tuple[list[_Job], int]:
        now = self._clock.now()
        lease = now + timedelta(seconds=self._o.lease_s)
        jobs: list[_Job] = []
        key = self.worker_key
        if key is None:
            raise RuntimeError("the worker is not connected")
        with self.conn.transaction():
            due = delivery.due(self.conn, now, channels=list(self._channels), limit=self._o.batch)
            for c in due:
                decision = decide(c, now)
                if isinstance(decision, Cancel):
                    delivery.cancel(self.conn, c.outbox_id, now, reason=decision.reason)
                    stats.canceled += 1
                elif isinstance(decision, Defer):
                    delivery.defer(self.conn, c.outbox_id, decision.until, reason=decision.reason)
                    stats.deferred += 1
                else:
                    attempt_id, number = delivery.begin_attempt(
                        self.conn, c, worker_key=key, now=now, lease_until=lease
                    )
                    jobs.append(_Job(c, attempt_id, number, self._link(c, now)))
        return jobs, len(due)

    def _link(self, c: Candidate, now: datetime) -> AckLinkRow | None:
        if c.alert_id is None or c.params.get("ack") is not True:
            return None
        expires = (now + timedelta(seconds=self._o.ack_ttl_s)).replace(microsecond=0)
        return ack_links.ensure_link(
            self.conn,
            outbox_id=c.outbox_id,
            org_id=c.org_id,
            alert_id=c.alert_id,
            recipient_user_id=c.recipient_user_id,
            now=now,
            expires_at=expires,
        )

    # -- sending ---------------------------------------------------------------------------------

    def _outgoing(self, job: _Job) -> Outgoing:
        c = job.c
        links = Links(self._o.public_url)
        if job.link is not None:
            token = self._signer.token(
                AckClaim(job.link.link_id, job.link.alert_id, job.link.recipient_user_id, job.link.expires_at)
            )
            links = Links(self._o.public_url, links.page(ack_path(job.link.alert_id, token)), job.link.expires_at)
        rendered = render(
            c.kind,
            c.channel,
            c.params,
            c.secret_params,
            links,
            urgent=c.urgent,
            text_channels=self._o.text_channels,
            template_version=c.template_version,
        )
        to = {"email": c.recipient_email, "sms": c.sms_number, "push": c.push_token}.get(c.channel, "") or ""
        if c.channel != "in_app" and not to:
            raise DeliveryError("no_address", permanent=True)
        return Outgoing(c.idempotency_key, c.channel, to, rendered.subject, rendered.text, c.urgent)

    def _commit_point(self, job: _Job) -> Callable[[], bool]:
        def mark() -> bool:
            lease = self._clock.now() + timedelta(seconds=self._o.lease_s)
            with self.conn.transaction():
                return delivery.mark_committing(self.conn, job.c.outbox_id, job.attempt_id, lease_until=lease)

        return mark

    def _process(self, job: _Job, stats: RoundStats) -> None:
        c = job.c
        try:
            msg = self._outgoing(job)
        except DeliveryError as exc:
            self._failed(job, exc, stats)
            return
        except (NotifyError, KeyError, ValueError, TypeError) as exc:  # the row cannot be rendered: permanent
            log.warning("notification %d: cannot render (%s)", c.outbox_id, type(exc).__name__)
            code = exc.reason if isinstance(exc, NotifyError) else "bad_params"
            self._failed(job, DeliveryError(code, permanent=True), stats)
            return
        try:
            receipt = self._channels[c.channel].send(msg, self._commit_point(job))
        except DatabaseUnavailable:
            raise
        except DeliveryError as exc:
            self._failed(job, exc, stats)
            return
        except NotifyError as exc:
            self._failed(job, DeliveryError(exc.reason, permanent=True), stats)
            return
        except Exception as exc:  # noqa: BLE001 - one notification's failure, never the worker's
            # No traceback: an exception's text may quote the message or the address.
            log.error("notification %d: unexpected %s while sending", c.outbox_id, type(exc).__name__)  # noqa: TRY400
            self._failed(job, DeliveryError("internal_error", permanent=False), stats)
            return
        outcome: delivery.Outcome = "delivered" if receipt.delivered else "sent"
        with self.conn.transaction():
            ok = delivery.finish(
                self.conn, c.outbox_id, job.attempt_id, self._clock.now(), outcome, provider_ref=receipt.provider_ref
            )
        if not ok:
            stats.lost += 1
            log.warning("notification %d: attempt %s was taken over meanwhile", c.outbox_id, job.attempt_id)
        elif receipt.delivered:
            stats.delivered += 1
        else:
            stats.sent += 1

    def _failed(self, job: _Job, exc: DeliveryError, stats: RoundStats) -> None:
        c, now = job.c, self._clock.now()
        if exc.code == "superseded":
            stats.lost += 1
            return
        final = exc.permanent or job.attempt_no >= self._o.max_attempts
        with self.conn.transaction():
            if final:
                ok = delivery.finish(self.conn, c.outbox_id, job.attempt_id, now, "failed", error=exc.code)
            else:
                jitter = min(max(self._draw() * self._o.jitter, 0.0), 0.999)
                delay = backoff_delay(exc, job.attempt_no - 1, policy=self._o.backoff, jitter=jitter)
                ok = delivery.finish(
                    self.conn,
                    c.outbox_id,
                    job.attempt_id,
                    now,
                    "retry",
                    error=exc.code,
                    next_attempt_at=now + timedelta(seconds=delay),
                )
        if not ok:
            stats.lost += 1
        elif final:
            stats.failed += 1
            log.warning("notification %d failed: %s (attempt %d)", c.outbox_id, exc.code, job.attempt_no)
        else:
            stats.retried += 1
            log.info("notification %d: %s; retrying (attempt %d)", c.outbox_id, exc.code, job.attempt_no)

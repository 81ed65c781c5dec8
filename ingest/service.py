"""The ingest loop: collect a batch, write it in one transaction, COMMIT, then PUBACK, then receipts.

Threads: paho's network thread only enqueues (:meth:`IngestService._arrived`); one worker thread
takes up to ``batch_max_messages`` messages (waiting at most ``batch_max_wait_ms`` after the
first), loads the agents they name, classifies them (``ingest.classify``), commits, and then:

1. acknowledges, through :class:`~ingest.acks.AckTracker`, the unbroken arrival-order prefix of
   committed messages of the current connection (stale generations are dropped);
2. publishes a signed receipt per agent of the batch (its committed high-water mark);
3. updates the metrics. The watermark NOTIFY went out right after the COMMIT.

Nothing is acknowledged before its COMMIT, dead letters included. Database trouble stops the acks
(messages stay unacknowledged at the broker) and is retried with ``rpm_core.backoff`` until it
works; a batch that fails for another database reason is split in halves, down to one message,
which is then dead-lettered (``store_error``) so one poison message cannot stall the stream.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Protocol

from ingest.acks import AckTracker
from ingest.classify import Classified, Incoming, classify
from ingest.consumer import MqttConsumer
from ingest.errors import RefusedToStart
from ingest.metrics import IngestMetrics
from ingest.settings import IngestSettings
from rpm_core.backoff import BackoffPolicy, backoff_delay
from rpm_core.clock import Clock, SystemClock
from rpm_core.downlink import Receipt, sign_receipt
from rpm_core.ids import AgentId, OrgId
from rpm_core.keystore import ServerKeyring
from rpm_core.topics import Topic, ingest_subscription
from store.agents import AgentRecord
from store.errors import DatabaseUnavailable, StoreError, TransientConflict
from store.ingest_db import BatchResult, BatchWrite, IngestDatabase
from store.ingest_state import DeadLetterRow

__all__ = ["IngestService", "IngestStore"]

log = logging.getLogger(__name__)


class IngestStore(Protocol):
    """The database seam (``store.ingest_db.IngestDatabase``)."""

    def synchronous_commit(self) -> str: ...
    def load_agents(self, agent_ids: Iterable[str]) -> dict[str, AgentRecord]: ...
    def commit(self, batch: BatchWrite, *, now: datetime) -> BatchResult: ...
    def close(self) -> None: ...


class IngestService:
    def __init__(
        self,
        settings: IngestSettings,
        *,
        keyring: ServerKeyring,
        mqtt_password: str,
        clock: Clock | None = None,
        metrics: IngestMetrics | None = None,
        connect_db: Callable[[], IngestStore] | None = None,
    ) -> None:
        self.settings = settings
        self.keyring = keyring
        self.clock = clock or SystemClock()
        self.metrics = metrics or IngestMetrics()
        self._connect_db = connect_db or (lambda: IngestDatabase.connect(settings.database_url))
        self._db: IngestStore | None = None
        self._policy = BackoffPolicy(base_s=settings.db_retry_base_s, cap_s=settings.db_retry_cap_s)
        self._cond = threading.Condition()
        self._queue: deque[Incoming] = deque()
        self._tracker = AckTracker()
        self._connects = 0
        self._stopping = False
        self._abort = threading.Event()
        self._worker: threading.Thread | None = None
        self.committed_batches = 0
        self.failure: BaseException | None = None
        self.last_session_present: bool | None = None
        self._consumer = MqttConsumer(
            host=settings.mqtt_host,
            port=settings.mqtt_port,
            ca_file=settings.ca_file(),
            username=settings.username(),
            password=mqtt_password,
            client_id=settings.mqtt_client_id,
            subscription=ingest_subscription(settings.shared_group),
            session_expiry_s=settings.mqtt_session_expiry_s,
            receive_maximum=settings.mqtt_receive_maximum,
            keepalive_s=settings.mqtt_keepalive_s,
            on_message=self._arrived,
            on_connected=self._connected,
            on_takeover=self._taken_over,
        )

    # -- lifecycle ------------------------------------------------------------------------------

    def start(self) -> None:
        """Check the database (refuse to run with synchronous_commit off), then consume."""
        self._database()
        self._worker = threading.Thread(target=self._run, name="ingest-worker", daemon=True)
        self._worker.start()
        self._consumer.start()

    def stop(self, timeout: float = 30.0) -> None:
        """Graceful: commit and acknowledge what has arrived, then disconnect (the rest is redelivered)."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self._worker is not None:
            self._worker.join(timeout)
            if self._worker.is_alive():  # the database is down: give up; nothing unsafe was acked
                self._abort.set()
                self._worker.join(timeout)
        self._consumer.stop()
        if self._db is not None:
            self._db.close()
            self._db = None

    def wait(self) -> None:
        if self._worker is not None:
            self._worker.join()

    @property
    def connected(self) -> bool:
        return self._consumer.is_connected()

    @property
    def unacknowledged(self) -> int:
        """Messages of the current connection received and not yet acknowledged."""
        with self._cond:
            return self._tracker.outstanding

    # -- paho thread ----------------------------------------------------------------------------

    def _connected(self, session_present: bool) -> None:
        with self._cond:
            self._tracker.connected()
            self._connects += 1
            first = self._connects == 1
            self.last_session_present = session_present
        if not session_present and not first:
            self.metrics.sessions_lost.inc()
            log.error(
                "SESSION LOST: the broker had no session for client %s; messages queued while we were away "
                "may be gone (check session expiry and broker persistence)",
                self.settings.mqtt_client_id,
            )
        log.info("connected to the broker (session present: %s)", session_present)

    def _taken_over(self, inferred: bool) -> None:
        self.metrics.takeovers.inc()
        log.error(
            "CLIENT ID TAKEOVER: another client connected with client id %s and took this worker's session (%s); "
            "give every ingest worker its own --client-id",
            self.settings.mqtt_client_id,
            "inferred from sessions the broker cut right after accepting them" if inferred else "said by the broker",
        )

    def _arrived(self, topic: str, payload: bytes, mid: int, qos: int) -> None:
        with self._cond:
            token = self._tracker.arrived(mid) if qos > 0 else None
            self._queue.append(Incoming(topic, payload, token, time.monotonic()))
            if len(self._queue) >= self.settings.batch_max_messages or len(self._queue) == 1:
                self._cond.notify_all()

    # -- worker thread --------------------------------------------------------------------------

    def _run(self) -> None:
        try:
            while True:
                batch = self._take()
                if not batch:
                    if self._stopping:
                        return
                    continue
                if not self._process(batch):
                    return
        except RefusedToStart as exc:
            self.failure = exc
            log.critical("%s", exc)
        except BaseException as exc:
            self.failure = exc
            log.critical("ingest worker stopped: %s", type(exc).__name__)
            raise

    def _take(self) -> list[Incoming]:
        limit = self.settings.batch_max_messages
        wait = self.settings.batch_max_wait_ms / 1000
        with self._cond:
            deadline: float | None = None
            while not self._stopping and len(self._queue) < limit:
                now = time.monotonic()
                if self._queue and deadline is None:
                    deadline = self._queue[0].received + wait
                if deadline is not None and now >= deadline:
                    break
                self._cond.wait(0.5 if deadline is None else deadline - now)
            n = min(len(self._queue), limit)
            return [self._queue.popleft() for _ in range(n)]

    def _process(self, batch: list[Incoming]) -> bool:
        started = time.monotonic()
        done = self._commit_all(batch)
        if done is None:
            return False
        for part, (classified, result) in done:
            self._after_commit(part, classified, result)
        self.metrics.commit_seconds.observe(time.monotonic() - started)
        self.committed_batches += 1
        return True

    def _database(self) -> IngestStore:
        if self._db is None:
            db = self._connect_db()
            mode = db.synchronous_commit()
            if mode in ("off", "local"):
                db.close()
                raise RefusedToStart(
                    f"synchronous_commit is {mode!r}: a COMMIT could be lost after we acknowledged it; "
                    "set it to 'on' (or remote_write/remote_apply) for the ingest role"
                )
            self._db = db
        return self._db

    def _commit_all(self, batch: list[Incoming]) -> list[tuple[list[Incoming], tuple[Classified, BatchResult]]] | None:
        attempt = 0
        while True:
            try:
                return [(batch, self._commit_once(batch))]
            except (DatabaseUnavailable, TransientConflict) as exc:
                if isinstance(exc, DatabaseUnavailable):
                    self._drop_db()
                self.metrics.db_up.set(0)
                self.metrics.db_errors.labels(exc.reason).inc()
                delay = backoff_delay(exc, attempt, policy=self._policy)
                log.warning("batch of %d not committed (%s); retry in %.1fs", len(batch), exc.reason, delay)
                attempt += 1
                if self._abort.wait(delay):
                    return None
            except StoreError as exc:
                self.metrics.db_errors.labels(exc.reason).inc()
                return self._split(batch, exc)

    def _split(
        self, batch: list[Incoming], exc: StoreError
    ) -> list[tuple[list[Incoming], tuple[Classified, BatchResult]]] | None:
        if len(batch) == 1:
            log.error("message on %s cannot be stored (%s): dead-lettered", batch[0].topic[:120], exc.reason)
            return self._commit_all_dead(batch)
        half = len(batch) // 2
        first = self._commit_all(batch[:half])
        second = self._commit_all(batch[half:]) if first is not None else None
        return None if first is None or second is None else first + second

    def _commit_all_dead(
        self, batch: list[Incoming]
    ) -> list[tuple[list[Incoming], tuple[Classified, BatchResult]]] | None:
        out = Classified()
        for m in batch:
            out.write.dead_letters.append(DeadLetterRow(m.topic[:512], "store_error", "", m.payload, None, None))
            out.dead["store_error"] += 1
            out.kinds["dead_letter"] += 1
        while True:
            try:
                return [(batch, (out, self._database().commit(out.write, now=self.clock.now())))]
            except StoreError as exc:
                self._drop_db()
                if self._abort.wait(backoff_delay(exc, 3, policy=self._policy)):
                    return None

    def _commit_once(self, batch: list[Incoming]) -> tuple[Classified, BatchResult]:
        db = self._database()
        agents = db.load_agents(sorted({_agent_of(m.topic) for m in batch} - {""}))
        classified = classify(batch, agents, self.keyring.by_kid, now=self.clock.now())
        result = db.commit(classified.write, now=self.clock.now())
        self.metrics.db_up.set(1)
        return classified, result

    def _drop_db(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    def _after_commit(self, batch: list[Incoming], classified: Classified, result: BatchResult) -> None:
        with self._cond:
            mids = self._tracker.done([m.token for m in batch if m.token is not None])
            outstanding = self._tracker.outstanding
            oldest = self._queue[0].received if self._queue else None
        self._consumer.ack_many(mids)
        now = self.clock.now()
        for agent, org in classified.receipts.items():
            receipt = Receipt(OrgId(org), AgentId(agent), result.through.get(agent, 0), now)
            self._consumer.publish(
                str(Topic.receipts(receipt.org, receipt.agent)), sign_receipt(receipt, self.keyring.current)
            )
        self._observe(batch, classified, result, outstanding, oldest)

    def _observe(
        self, batch: list[Incoming], classified: Classified, result: BatchResult, outstanding: int, oldest: float | None
    ) -> None:
        m, mono, now = self.metrics, time.monotonic(), self.clock.now()
        for kind, n in classified.kinds.items():
            m.messages.labels(kind).inc(n)
        for reason, n in classified.dead.items():
            m.dead_letters.labels(reason).inc(n)
            log.warning("dead-lettered %d message(s): %s", n, reason)
        m.readings.inc(result.inserted)
        m.duplicates.inc(len(classified.write.readings) - result.inserted)
        m.receipts.inc(len(classified.receipts))
        m.batch_size.observe(len(batch))
        for msg in batch:
            m.arrival_to_commit.observe(mono - msg.received)
        for sent in classified.sent_at:
            m.sent_to_commit.observe(max(0.0, (now - sent).total_seconds()))
        m.lag.set(outstanding)
        m.oldest.set(0.0 if oldest is None else mono - oldest)
        for agent in result.activated:
            log.info("agent %s registered and activated", agent)


def _agent_of(topic: str) -> str:
    parts = topic.split("/")
    return parts[3] if len(parts) == 6 else ""

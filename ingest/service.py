"""The ingest loop: collect a batch, write it in one transaction, COMMIT, then PUBACK, then receipts.

Threads: paho's network thread only enqueues (:meth:`IngestService._arrived`); one worker thread
takes up to ``batch_max_messages`` messages (waiting at most ``batch_max_wait_ms`` after the
first), loads the agents they name, classifies them (``ingest.classify``), commits, and then:

1. acknowledges, through :class:`~ingest.acks.AckTracker`, the unbroken arrival-order prefix of
   committed messages of the current connection (stale generations are dropped);
2. publishes a signed receipt per agent of the batch (its committed high-water mark);
3. updates the metrics and raises alarms (``ingest.observe``). The watermark NOTIFY went out right
   after the COMMIT.

Nothing is acknowledged before its COMMIT, dead letters included.

Failures, by whose they are:

* **The database's** (``DatabaseUnavailable``: lost, read-only, disk full, out of memory, too many
  connections; ``MigrationError``): never the messages' fault. Acks stop (the messages stay
  unacknowledged at the broker), the same batch is retried with ``rpm_core.backoff`` until it
  commits, ``vigil_ingest_database_up`` is 0, ``vigil_ingest_database_outage_seconds`` and the lag
  gauges grow, and one ERROR line marks the outage (one more when it ends), not one per retry.
* **Possibly one message's** (another ``StoreError``, or any other exception while handling a
  batch): the batch is split in halves down to one message, which is dead-lettered
  (``store_error`` or ``internal_error``), so one poison message cannot stall the stream.
  Classification itself never raises (``ingest.classify``).
* **After the COMMIT** (an ack, a receipt, a metric): logged and counted
  (``vigil_ingest_internal_errors_total{stage}``); the worker carries on.

Unexpected exceptions are logged by type and place (``ingest.classify.internal_detail``), never
with their text or a traceback: the text may carry untrusted data.

Between batches the worker applies the dead letters' retention (``dead_letter_retention_days``),
at start and every ``dead_letter_prune_interval_s``.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta
from typing import Protocol, TypeAlias

from ingest.acks import AckTracker
from ingest.classify import Classified, Incoming, Limits, classify, clean_topic, dead_letter_row, internal_detail
from ingest.consumer import MqttConsumer
from ingest.database import BatchResult, BatchWrite, IngestDatabase
from ingest.errors import RefusedToStart
from ingest.limits import TokenBuckets, limit_dead_letters
from ingest.metrics import IngestMetrics
from ingest.observe import BatchObserver
from ingest.opener import EnvelopeOpener
from ingest.settings import IngestSettings
from rpm_core.backoff import BackoffPolicy, backoff_delay
from rpm_core.clock import Clock, SystemClock
from rpm_core.downlink import Receipt, sign_receipt
from rpm_core.ids import AgentId, OrgId
from rpm_core.keystore import ServerKeyring
from rpm_core.topics import Topic, ingest_subscription
from store.agents import AgentRecord
from store.dead_letters import DeadLetterRow
from store.errors import DatabaseUnavailable, MigrationError, StoreError, TransientConflict

__all__ = ["IngestService", "IngestStore"]

log = logging.getLogger(__name__)

_Committed: TypeAlias = list[tuple[list[Incoming], tuple[Classified, BatchResult]]]
_DATABASE_SIDE = (DatabaseUnavailable, MigrationError)


class IngestStore(Protocol):
    """The database seam (``ingest.database.IngestDatabase``)."""

    def synchronous_commit(self) -> str: ...
    def load_agents(self, agent_ids: Iterable[str]) -> dict[str, AgentRecord]: ...
    def commit(self, batch: BatchWrite, *, now: datetime) -> BatchResult: ...
    def prune_dead_letters(self, *, before: datetime) -> int: ...
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
        self._opener = EnvelopeOpener(keyring.by_kid)  # lives as long as the worker: its caches do
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
        self._limits = Limits(
            payload_max_bytes=settings.dead_letter_payload_max_bytes,
            max_age=timedelta(seconds=settings.freshness_max_age_s),
            max_ahead=timedelta(seconds=settings.freshness_max_ahead_s),
            max_behind=timedelta(seconds=settings.freshness_max_behind_s),
        )
        self._buckets = TokenBuckets(rate_per_s=settings.dead_letter_per_minute / 60, burst=settings.dead_letter_burst)
        self._observer = BatchObserver(self.metrics, settings, self.clock)
        self._outage_since: float | None = None  # time.monotonic() of the first failure of this outage
        self._outage_attempts = 0
        self._next_prune = self.clock.monotonic()  # at start
        self.metrics.lag.set_function(lambda: float(self.unacknowledged))
        self.metrics.oldest.set_function(self._oldest_age)
        self.metrics.outage.set_function(self._outage_age)
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
            socket_path=settings.mqtt_socket,
        )

    # -- lifecycle ------------------------------------------------------------------------------

    def start(self) -> None:
        """Check the database (refuse to run with synchronous_commit off), then consume."""
        self._database()
        self.metrics.db_up.set(1)
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

    def _oldest_age(self) -> float:
        with self._cond:
            oldest = self._tracker.oldest_arrival
        return 0.0 if oldest is None else max(0.0, time.monotonic() - oldest)

    def _outage_age(self) -> float:
        since = self._outage_since
        return 0.0 if since is None else time.monotonic() - since

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
        now = time.monotonic()
        with self._cond:
            token = self._tracker.arrived(mid, now) if qos > 0 else None
            self._queue.append(Incoming(topic, payload, token, now))
            if len(self._queue) >= self.settings.batch_max_messages or len(self._queue) == 1:
                self._cond.notify_all()

    # -- worker thread --------------------------------------------------------------------------

    def _run(self) -> None:
        try:
            while True:
                if self.clock.monotonic() >= self._next_prune:
                    self._prune()
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

    def _commit_all(self, batch: list[Incoming]) -> _Committed | None:
        """Commit ``batch``: retried while the database is at fault, split while a message may be."""
        attempt = 0
        while True:
            try:
                committed = [(batch, self._commit_once(batch))]
            except TransientConflict as exc:
                self.metrics.db_errors.labels(exc.reason).inc()
                delay = backoff_delay(exc, attempt, policy=self._policy)
                log.warning("batch of %d not committed (%s); retry in %.1fs", len(batch), exc.reason, delay)
            except _DATABASE_SIDE as exc:
                self._outage(exc)
                delay = backoff_delay(exc, attempt, policy=self._policy)
            except StoreError as exc:
                self.metrics.db_errors.labels(exc.reason).inc()
                return self._split(batch, "store_error", f"the database refused it ({exc.reason})")
            except RefusedToStart:
                raise
            except Exception as exc:  # noqa: BLE001 - one batch's failure, whatever it is, must not stop the worker
                self._drop_db()  # its transaction state is unknown
                self.metrics.internal_errors.labels("batch").inc()
                detail = internal_detail(exc)
                log.error("batch of %d failed (%s): split to find the message", len(batch), detail)  # noqa: TRY400
                return self._split(batch, "internal_error", detail)
            else:
                self._recovered()
                return committed
            attempt += 1
            if self._abort.wait(delay):
                return None

    def _split(self, batch: list[Incoming], reason: str, detail: str) -> _Committed | None:
        if len(batch) == 1:
            log.error("message on %s cannot be stored (%s): dead-lettered", clean_topic(batch[0].topic)[:120], reason)
            return self._commit_all_dead(batch, reason, detail)
        half = len(batch) // 2
        first = self._commit_all(batch[:half])
        second = self._commit_all(batch[half:]) if first is not None else None
        return None if first is None or second is None else first + second

    def _commit_all_dead(self, batch: list[Incoming], reason: str, detail: str) -> _Committed | None:
        """Dead-letter ``batch`` (one message); if even that row is refused, keep only its length and hash."""
        attempt, minimal = 0, False
        while True:
            try:
                out = self._dead(batch, reason, detail, minimal=minimal)
                result = self._write(out)
            except _DATABASE_SIDE as exc:
                self._outage(exc)
            except TransientConflict as exc:
                self.metrics.db_errors.labels(exc.reason).inc()
            except RefusedToStart:
                raise
            except Exception as exc:  # noqa: BLE001 - the dead letter itself is refused: store less of it
                self._drop_db()
                self.metrics.internal_errors.labels("dead_letter").inc()
                log.error("dead letter refused (%s); storing less of it", internal_detail(exc))  # noqa: TRY400
                minimal = True
            else:
                self._recovered()
                return [(batch, (out, result))]
            if self._abort.wait(backoff_delay(None, attempt, policy=self._policy)):
                return None
            attempt += 1

    def _dead(self, batch: list[Incoming], reason: str, detail: str, *, minimal: bool) -> Classified:
        out = Classified()
        for m in batch:
            if minimal:  # no topic, no payload: only what cannot be refused
                row = DeadLetterRow("", reason, "", b"", None, None, len(m.payload), hashlib.sha256(m.payload).digest())
            else:
                cap = self._limits.payload_max_bytes
                row = dead_letter_row(m.topic, reason, detail, m.payload, payload_max_bytes=cap)
            out.write.dead_letters.append(row)
            out.dead[reason] += 1
            out.kinds["dead_letter"] += 1
        return out

    def _commit_once(self, batch: list[Incoming]) -> tuple[Classified, BatchResult]:
        db = self._database()
        agents = db.load_agents(sorted({_agent_of(m.topic) for m in batch} - {""}))
        classified = classify(batch, agents, self._opener, now=self.clock.now(), limits=self._limits)
        return classified, self._write(classified)

    def _write(self, classified: Classified) -> BatchResult:
        """Apply the agents' dead-letter rates, then commit; the tokens are spent only if it committed."""
        staged = self._buckets.stage()
        classified.suppressed = limit_dead_letters(classified.write, staged, self.clock.monotonic())
        result = self._database().commit(classified.write, now=self.clock.now())
        staged.commit()
        return result

    def _outage(self, exc: StoreError) -> None:
        """The database failed us: drop the connection, say so once per outage, count the attempt."""
        self._drop_db()
        self.metrics.db_up.set(0)
        self.metrics.db_errors.labels(exc.reason).inc()
        self._outage_attempts += 1
        if self._outage_since is None:
            self._outage_since = time.monotonic()
            log.error(
                "DATABASE UNAVAILABLE (%s): holding %d message(s) unacknowledged; retrying with backoff "
                "until it takes our writes again (nothing is dead-lettered for this)",
                getattr(exc, "sqlstate", None) or exc.reason,
                self.unacknowledged,
            )
        else:
            log.debug("database still unavailable (%s), attempt %d", exc.reason, self._outage_attempts)

    def _recovered(self) -> None:
        self.metrics.db_up.set(1)
        if self._outage_since is not None:
            log.error(
                "database available again after %.1f s and %d failed attempt(s)",
                time.monotonic() - self._outage_since,
                self._outage_attempts,
            )
            self._outage_since = None
            self._outage_attempts = 0

    def _drop_db(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    def _prune(self) -> None:
        """The dead letters' retention; never stops the worker (it is tried again later)."""
        interval = self.settings.dead_letter_prune_interval_s
        before = self.clock.now() - timedelta(days=self.settings.dead_letter_retention_days)
        try:
            deleted = self._database().prune_dead_letters(before=before)
        except RefusedToStart:
            raise
        except StoreError as exc:
            self._drop_db()
            log.warning("dead-letter retention postponed (%s)", exc.reason)
            self._next_prune = self.clock.monotonic() + min(interval, 60.0)
            return
        except Exception as exc:  # noqa: BLE001 - housekeeping must never stop ingest
            self._drop_db()
            self.metrics.internal_errors.labels("prune").inc()
            log.error("dead-letter retention failed (%s)", internal_detail(exc))  # noqa: TRY400
            self._next_prune = self.clock.monotonic() + interval
            return
        self.metrics.dead_letters_pruned.inc(deleted)
        if deleted:
            log.info("retention: %d dead letter(s) received before %s deleted", deleted, before.isoformat())
        self._next_prune = self.clock.monotonic() + interval

    def _after_commit(self, batch: list[Incoming], classified: Classified, result: BatchResult) -> None:
        with self._cond:
            mids = self._tracker.done([m.token for m in batch if m.token is not None])
        self._guarded("ack", lambda: self._consumer.ack_many(mids))
        now = self.clock.now()
        for agent, org in classified.receipts.items():
            receipt = Receipt(OrgId(org), AgentId(agent), result.through.get(agent, 0), now)
            self._guarded("receipt", functools.partial(self._publish_receipt, receipt))
        self._guarded("metrics", lambda: self._observer.committed(batch, classified, result))

    def _publish_receipt(self, receipt: Receipt) -> None:
        self._consumer.publish(
            str(Topic.receipts(receipt.org, receipt.agent)), sign_receipt(receipt, self.keyring.current)
        )

    def _guarded(self, stage: str, step: Callable[[], None]) -> None:
        """Run a step after the COMMIT; its failure is logged and counted, never the worker's end."""
        try:
            step()
        except Exception as exc:  # noqa: BLE001 - the batch is committed: nothing may stop the worker now
            self.metrics.internal_errors.labels(stage).inc()
            log.error("%s after commit failed (%s); the worker carries on", stage, internal_detail(exc))  # noqa: TRY400


def _agent_of(topic: str) -> str:
    parts = topic.split("/")
    return parts[3] if len(parts) == 6 else ""

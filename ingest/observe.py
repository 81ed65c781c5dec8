"""What a committed batch tells the operator: Prometheus metrics and alarm lines.

Alarm lines (a dead-letter flood, envelopes outside the freshness window) go through an
:class:`~ingest.limits.AlarmGate`: at most one per agent and kind per ``alarm_log_interval_s``,
while the metrics count every occurrence. Lines carry agent ids, reasons and counts, never values
or payloads.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence

from ingest.classify import Classified, Incoming
from ingest.database import BatchResult
from ingest.limits import AlarmGate
from ingest.metrics import IngestMetrics
from ingest.settings import IngestSettings
from rpm_core.clock import Clock

__all__ = ["BatchObserver"]

log = logging.getLogger(__name__)


class BatchObserver:
    def __init__(self, metrics: IngestMetrics, settings: IngestSettings, clock: Clock) -> None:
        self.metrics = metrics
        self.settings = settings
        self.clock = clock
        self._alarms = AlarmGate(settings.alarm_log_interval_s)

    def committed(self, batch: Sequence[Incoming], classified: Classified, result: BatchResult) -> None:
        m, mono, now = self.metrics, time.monotonic(), self.clock.now()
        for kind, n in classified.kinds.items():
            m.messages.labels(kind).inc(n)
        for reason, n in classified.dead.items():
            m.dead_letters.labels(reason).inc(n)
            log.warning("dead-lettered %d message(s): %s", n, reason)
        for topic, detail in classified.internal:
            log.error("message on %s dead-lettered: internal_error (%s)", topic, detail)
        m.readings.inc(result.inserted)
        m.duplicates.inc(len(classified.write.readings) - result.inserted)
        m.receipts.inc(len(classified.receipts))
        m.batch_size.observe(len(batch))
        for msg in batch:
            m.arrival_to_commit.observe(mono - msg.received)
        for sent in classified.sent_at:
            m.sent_to_commit.observe(max(0.0, (now - sent).total_seconds()))
        for agent in result.activated:
            log.info("agent %s registered and activated", agent)
        self._alarm_suppressed(classified)
        self._alarm_stale(classified)

    def _alarm_suppressed(self, classified: Classified) -> None:
        gate_now = self.clock.monotonic()
        for agent, n in classified.suppressed.items():
            self.metrics.dead_letters_suppressed.labels(agent).inc(n)
            if self._alarms.open(("flood", agent), gate_now):
                log.error(
                    "DEAD LETTER FLOOD: agent %s is over its dead-letter rate (%d burst, %.1f/min): %d more "
                    "acknowledged and counted without their payload (vigil_ingest_dead_letters_suppressed_total, "
                    "table dead_letter_suppressed); next alarm for it in %.0f s at the earliest",
                    agent or "?",
                    self.settings.dead_letter_burst,
                    self.settings.dead_letter_per_minute,
                    n,
                    self.settings.alarm_log_interval_s,
                )

    def _alarm_stale(self, classified: Classified) -> None:
        gate_now = self.clock.monotonic()
        for (agent, kind), n in classified.stale.items():
            self.metrics.stale.labels(agent, kind).inc(n)
            if not self._alarms.open((kind, agent), gate_now):
                continue
            if kind == "sent_long_ago":
                log.warning(
                    "agent %s: %d readings envelope(s) sent long ago (more than %.0f s before the server's clock: "
                    "a backlog or a replay); stored and flagged ingest:sent_long_ago",
                    agent,
                    n,
                    self.settings.freshness_max_age_s,
                )
            elif kind == "sent_late":
                log.warning(
                    "agent %s: %d readings envelope(s) sent late (more than %.0f s before the server's clock: the "
                    "agent's clock is behind, or they waited in the broker); stored and flagged ingest:sent_late",
                    agent,
                    n,
                    self.settings.freshness_max_behind_s,
                )
            else:
                log.warning(
                    "agent %s: %d readings envelope(s) sent in the future (more than %.0f s after the server's "
                    "clock: the agent's clock runs ahead); stored and flagged ingest:sent_in_future",
                    agent,
                    n,
                    self.settings.freshness_max_ahead_s,
                )

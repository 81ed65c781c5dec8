"""Prometheus metrics of the ingest service, in their own registry (one per service instance)."""

from __future__ import annotations

from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

__all__ = ["IngestMetrics"]

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
_SIZE_BUCKETS = (1, 5, 10, 25, 50, 100, 250, 500, 1000, 2000, 5000)


@dataclass
class IngestMetrics:
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        r = self.registry
        self.messages = Counter("vigil_ingest_messages", "MQTT messages handled, by kind", ["kind"], registry=r)
        self.readings = Counter("vigil_ingest_readings", "Readings newly stored", registry=r)
        self.duplicates = Counter("vigil_ingest_duplicates", "Readings absorbed as duplicates", registry=r)
        self.dead_letters = Counter("vigil_ingest_dead_letters", "Dead letters by reason", ["reason"], registry=r)
        self.receipts = Counter("vigil_ingest_receipts", "Receipts published", registry=r)
        self.batch_size = Histogram(
            "vigil_ingest_batch_messages", "Messages per committed batch", buckets=_SIZE_BUCKETS, registry=r
        )
        self.commit_seconds = Histogram(
            "vigil_ingest_commit_seconds", "Time to write and commit one batch", buckets=_LATENCY_BUCKETS, registry=r
        )
        self.arrival_to_commit = Histogram(
            "vigil_ingest_arrival_to_commit_seconds",
            "From a message's arrival to its commit",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.sent_to_commit = Histogram(
            "vigil_ingest_sent_to_commit_seconds",
            "From the agent's send time (inside the envelope) to commit; includes clock skew",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        # The service binds lag, oldest and outage to live values (Gauge.set_function): they are true at
        # every scrape, also while the worker is stuck retrying a database that is down.
        self.lag = Gauge("vigil_ingest_consumer_lag_messages", "Received, not yet acknowledged", registry=r)
        self.oldest = Gauge("vigil_ingest_consumer_lag_seconds", "Age of the oldest unacknowledged message", registry=r)
        self.db_up = Gauge("vigil_ingest_database_up", "1 while the database accepts our batches", registry=r)
        self.outage = Gauge(
            "vigil_ingest_database_outage_seconds",
            "Seconds since the database stopped accepting our batches; 0 while it accepts them",
            registry=r,
        )
        self.db_errors = Counter(
            "vigil_ingest_database_errors", "Failed batch attempts by reason", ["reason"], registry=r
        )
        self.dead_letters_suppressed = Counter(
            "vigil_ingest_dead_letters_suppressed",
            "Dead letters over the agent's rate: acknowledged and counted, payload not stored",
            ["agent"],
            registry=r,
        )
        self.dead_letters_pruned = Counter(
            "vigil_ingest_dead_letters_pruned", "Dead letters deleted by the retention", registry=r
        )
        self.stale = Counter(
            "vigil_ingest_stale_envelopes",
            "Readings envelopes whose sent_at is outside the freshness window (kind: sent_long_ago, sent_in_future)",
            ["agent", "kind"],
            registry=r,
        )
        self.internal_errors = Counter(
            "vigil_ingest_internal_errors",
            "Unexpected exceptions handled without stopping the worker, by stage",
            ["stage"],
            registry=r,
        )
        self.sessions_lost = Counter(
            "vigil_ingest_sessions_lost", "Reconnects where the broker had no session for us", registry=r
        )

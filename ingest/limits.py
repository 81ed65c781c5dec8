"""Per-agent limits of the ingest service, pure (the caller passes the monotonic time).

* :class:`TokenBuckets`: how many dead letters per agent are stored with their payload (a burst,
  then a steady rate). Tokens are taken on a :meth:`TokenBuckets.stage` and kept only when the
  batch committed (:meth:`StagedBuckets.commit`): a batch retried after a database failure is not
  charged twice.
* :func:`limit_dead_letters`: applies the buckets to a batch's dead letters; the ones over an
  agent's rate leave the batch and are added up into one :class:`~store.dead_letters.SuppressedRow`
  per agent (counted, still acknowledged, payload not stored).
* :class:`AlarmGate`: lets one alarm line per key (an agent and a kind) through per interval, so
  a flood produces one log line per window, not one per message.

State lives in one worker process: with N workers an agent's effective rate is up to N times the
setting (the shared subscription spreads its messages over the workers).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Hashable
from dataclasses import dataclass
from typing import Final

from ingest.database import BatchWrite
from store.dead_letters import DeadLetterRow, SuppressedRow

__all__ = ["AlarmGate", "StagedBuckets", "TokenBuckets", "limit_dead_letters"]

_MAX_KEYS: Final = 100_000


@dataclass(slots=True)
class _Bucket:
    tokens: float
    at: float


class TokenBuckets:
    """``burst`` tokens per key at first, refilled at ``rate_per_s`` up to ``burst``."""

    def __init__(self, *, rate_per_s: float, burst: int, max_keys: int = _MAX_KEYS) -> None:
        if rate_per_s < 0 or burst < 0 or max_keys < 1:
            raise ValueError("need rate_per_s >= 0, burst >= 0 and max_keys >= 1")
        self.rate_per_s = rate_per_s
        self.burst = burst
        self.max_keys = max_keys
        self._buckets: dict[str, _Bucket] = {}

    def level(self, key: str, now: float) -> float:
        """Tokens ``key`` has at ``now``."""
        b = self._buckets.get(key)
        if b is None:
            return float(self.burst)
        return min(float(self.burst), b.tokens + max(0.0, now - b.at) * self.rate_per_s)

    def stage(self) -> StagedBuckets:
        return StagedBuckets(self)

    def _store(self, key: str, tokens: float, now: float) -> None:
        if key not in self._buckets and len(self._buckets) >= self.max_keys:
            # Forget the buckets that are full again: they hold no state worth keeping.
            self._buckets = {k: b for k, b in self._buckets.items() if self.level(k, now) < self.burst}
            if len(self._buckets) >= self.max_keys:
                self._buckets.clear()
        self._buckets[key] = _Bucket(tokens, now)


class StagedBuckets:
    """Tokens taken tentatively from :class:`TokenBuckets`; :meth:`commit` makes them stick."""

    def __init__(self, parent: TokenBuckets) -> None:
        self._parent = parent
        self._taken: dict[str, _Bucket] = {}

    def take(self, key: str, now: float) -> bool:
        """Take one token for ``key``; False (nothing taken) when it has none."""
        staged = self._taken.get(key)
        if staged is None:
            tokens = self._parent.level(key, now)
        else:
            p = self._parent
            tokens = min(float(p.burst), staged.tokens + max(0.0, now - staged.at) * p.rate_per_s)
        if tokens < 1.0:
            self._taken[key] = _Bucket(tokens, now)
            return False
        self._taken[key] = _Bucket(tokens - 1.0, now)
        return True

    def commit(self) -> None:
        for key, b in self._taken.items():
            self._parent._store(key, b.tokens, b.at)
        self._taken.clear()


def limit_dead_letters(write: BatchWrite, buckets: StagedBuckets, now: float) -> Counter[str]:
    """Keep in ``write.dead_letters`` those each agent still has tokens for; move the others into
    ``write.suppressed`` (one row per agent). Returns the suppressed count per agent ('' unknown)."""
    kept: list[DeadLetterRow] = []
    over: dict[str, list[DeadLetterRow]] = {}
    for row in write.dead_letters:
        key = row.agent_id or ""
        if buckets.take(key, now):
            kept.append(row)
        else:
            over.setdefault(key, []).append(row)
    write.dead_letters = kept
    counts: Counter[str] = Counter()
    for key, rows in over.items():
        size = sum(len(r.payload) if r.payload_bytes is None else r.payload_bytes for r in rows)
        write.suppressed.append(SuppressedRow(key, rows[-1].org_id, len(rows), size, rows[-1].reason))
        counts[key] = len(rows)
    return counts


class AlarmGate:
    """At most one ``True`` per key and ``interval_s``: for alarm lines that must not flood the log."""

    def __init__(self, interval_s: float, *, max_keys: int = _MAX_KEYS) -> None:
        self.interval_s = interval_s
        self.max_keys = max_keys
        self._last: dict[Hashable, float] = {}

    def open(self, key: Hashable, now: float) -> bool:
        last = self._last.get(key)
        if last is not None and now - last < self.interval_s:
            return False
        if last is None and len(self._last) >= self.max_keys:
            self._last = {k: t for k, t in self._last.items() if now - t < self.interval_s}
            if len(self._last) >= self.max_keys:
                self._last.clear()
        self._last[key] = now
        return True

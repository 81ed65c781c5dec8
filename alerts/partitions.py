"""Patient partitions: which engine worker evaluates which patient. Pure.

A patient belongs to partition ``hash(patient_id) mod count`` (BLAKE2b: stable across processes
and Python versions, unlike ``hash()``). Workers hold partitions with PostgreSQL advisory locks and
aim for an even share: ``ceil(count / workers)``; a worker over its share releases partitions
between batches, one under it takes free ones.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable

__all__ = ["partition_of", "plan_rebalance", "target_share"]


def partition_of(patient_id: str, count: int) -> int:
    digest = hashlib.blake2b(patient_id.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % count


def target_share(count: int, workers: Iterable[int], me: int) -> int:
    """Partitions this worker should own, given the live workers (backend pids)."""
    return math.ceil(count / len(set(workers) | {me}))


def plan_rebalance(
    count: int, owned: Iterable[int], held_by_others: Iterable[int], share: int
) -> tuple[list[int], list[int]]:
    """``(release, try_take)``: partitions to give up and free partitions to try, to reach ``share``."""
    mine = sorted(set(owned))
    if len(mine) > share:
        return mine[share:], []
    taken = set(mine) | set(held_by_others)
    free = [p for p in range(count) if p not in taken]
    return [], free[: share - len(mine)]

"""AckTracker: PUBACKs in arrival order, only committed prefixes, stale generations dropped (catalogue 15)."""

from __future__ import annotations

import random

from hypothesis import given
from hypothesis import strategies as st

from ingest.acks import AckTracker


def test_commits_out_of_order_still_ack_in_arrival_order() -> None:
    t = AckTracker()
    t.connected()
    a, b, c = t.arrived(1), t.arrived(2), t.arrived(3)
    assert t.done([c]) == []  # 3 committed first: 1 and 2 are not, so nothing may be acked
    assert t.done([a]) == [1]
    assert t.done([b]) == [2, 3]
    assert t.outstanding == 0


def test_acks_from_an_older_connection_are_dropped() -> None:
    t = AckTracker()
    t.connected()
    old = t.arrived(7)
    t.connected()  # reconnect: packet id 7 may now name another message
    new = t.arrived(7)
    assert t.done([old]) == []
    assert t.done([new]) == [7]


@given(st.integers(1, 60), st.randoms(use_true_random=False))
def test_any_completion_order_yields_arrival_order(n: int, rnd: random.Random) -> None:
    t = AckTracker()
    t.connected()
    tokens = [t.arrived(i) for i in range(n)]
    shuffled = tokens[:]
    rnd.shuffle(shuffled)
    acked: list[int] = []
    committed: set[int] = set()
    for tok in shuffled:
        committed.add(tok.mid)
        got = t.done([tok])
        acked += got
        # Everything acknowledged so far is committed, and it is a prefix of the arrival order.
        assert acked == list(range(len(acked)))
        assert set(acked) <= committed
    assert acked == list(range(n))


def test_the_oldest_unacknowledged_arrival_is_known_for_the_lag_gauge() -> None:
    t = AckTracker()
    t.connected()
    assert t.oldest_arrival is None
    a, b = t.arrived(1, 10.0), t.arrived(2, 11.5)
    assert t.oldest_arrival == 10.0
    t.done([b])
    assert t.oldest_arrival == 10.0  # 2 is committed but waits behind 1: still unacknowledged
    t.done([a])
    assert t.oldest_arrival is None
    t.arrived(3, 12.0)
    t.connected()  # a new connection forgets the old one's messages (the broker redelivers them)
    assert t.oldest_arrival is None

"""Per-agent dead-letter rates and alarm lines (issue 10 item 7), pure: the time is passed in."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from ingest.database import BatchWrite
from ingest.limits import AlarmGate, TokenBuckets, limit_dead_letters
from store.dead_letters import DeadLetterRow


def row(agent: str | None, size: int = 10, reason: str = "malformed") -> DeadLetterRow:
    return DeadLetterRow("t", reason, "", b"x" * min(size, 4), "o1" if agent else None, agent, size, bytes(32))


def test_a_burst_then_the_rate() -> None:
    buckets = TokenBuckets(rate_per_s=0.5, burst=3)
    staged = buckets.stage()
    assert [staged.take("a1", 0.0) for _ in range(4)] == [True, True, True, False]
    assert staged.take("a2", 0.0)  # another agent has its own bucket
    assert not staged.take("a1", 1.0)  # half a token
    assert staged.take("a1", 2.0)  # one token after two seconds
    staged.commit()
    assert buckets.level("a1", 2.0) == 0.0
    assert buckets.level("a1", 100.0) == 3.0  # refilled up to the burst, never beyond


def test_tokens_are_spent_only_when_the_batch_committed() -> None:
    buckets = TokenBuckets(rate_per_s=0.0, burst=2)
    failed = buckets.stage()
    assert [failed.take("a1", 0.0) for _ in range(3)] == [True, True, False]
    # The database refused the batch: it is retried, with the agent's tokens intact.
    retry = buckets.stage()
    assert [retry.take("a1", 0.0) for _ in range(2)] == [True, True]
    retry.commit()
    assert not buckets.stage().take("a1", 0.0)


@given(st.lists(st.tuples(st.sampled_from(["a1", "a2", "a3"]), st.floats(0, 5)), max_size=60))
def test_no_agent_ever_gets_more_than_burst_plus_rate_times_time(events: list[tuple[str, float]]) -> None:
    buckets = TokenBuckets(rate_per_s=2.0, burst=4)
    now, taken = 0.0, {"a1": 0, "a2": 0, "a3": 0}
    for agent, step in events:
        now += step
        staged = buckets.stage()
        taken[agent] += staged.take(agent, now)
        staged.commit()
    assert all(n <= 4 + 2.0 * now + 1e-9 for n in taken.values())


def test_the_bucket_table_stays_bounded() -> None:
    buckets = TokenBuckets(rate_per_s=1.0, burst=1, max_keys=10)
    for i in range(100):
        staged = buckets.stage()
        staged.take(f"a{i}", float(i))
        staged.commit()
    assert len(buckets._buckets) <= 10


def test_dead_letters_over_the_rate_become_one_summary_row_per_agent() -> None:
    write = BatchWrite(dead_letters=[row("a1", 100), row("a1", 200), row("a1", 300, "bad_topic"), row(None), row("a2")])
    counts = limit_dead_letters(write, TokenBuckets(rate_per_s=0.0, burst=1).stage(), 0.0)
    assert [(r.agent_id, r.payload_bytes) for r in write.dead_letters] == [("a1", 100), (None, 10), ("a2", 10)]
    assert [(s.agent_id, s.messages, s.payload_bytes, s.last_reason) for s in write.suppressed] == [
        ("a1", 2, 500, "bad_topic")
    ]
    assert counts == {"a1": 2}


def test_one_alarm_line_per_key_and_interval() -> None:
    gate = AlarmGate(300.0)
    assert gate.open(("flood", "a1"), 0.0)
    assert not gate.open(("flood", "a1"), 299.0)
    assert gate.open(("flood", "a2"), 1.0)
    assert gate.open(("sent_long_ago", "a1"), 1.0)
    assert gate.open(("flood", "a1"), 300.0)

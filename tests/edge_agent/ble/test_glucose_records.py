"""ContextPairing: glucose records wait for their context, in order, and never longer than allowed."""

from __future__ import annotations

from datetime import UTC, datetime

from hypothesis import given
from hypothesis import strategies as st

from edge_agent.ble.glucose_records import ContextPairing, GlucoseRecord
from edge_agent.devices.datetime_field import DateTime
from edge_agent.devices.glucose import GlucoseMeasurement, SampleLocation, SampleType
from edge_agent.devices.glucose_context import GlucoseMeasurementContext, Meal
from edge_agent.devices.sfloat import SFloat

AT = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)


def record(sequence: int, *, context: bool = False) -> GlucoseMeasurement:
    return GlucoseMeasurement(
        sequence,
        DateTime(2026, 3, 1, 7, 0, 0),
        concentration=SFloat(100 + sequence % 100, -5),
        sample_type=SampleType.CAPILLARY_PLASMA,
        sample_location=SampleLocation.FINGER,
        context_follows=context,
    )


def meal(sequence: int) -> GlucoseMeasurementContext:
    return GlucoseMeasurementContext(sequence, meal=Meal.POSTPRANDIAL)


def summary(records: list[GlucoseRecord]) -> list[tuple[int, bool, bool]]:
    """(sequence, has its context, marked context_missing) per released record."""
    return [(r.sequence, r.context is not None, r.context_missing) for r in records]


def test_a_record_without_context_passes_straight_through() -> None:
    pairing = ContextPairing(timeout=10)
    assert summary(pairing.measurement(record(1), AT, now=0)) == [(1, False, False)]
    assert len(pairing) == 0


def test_a_record_waits_for_its_context_then_both_are_released() -> None:
    pairing = ContextPairing(timeout=10)
    assert pairing.measurement(record(1, context=True), AT, now=0) == []
    assert 1 in pairing
    released, paired = pairing.context(meal(1))
    assert paired
    assert summary(released) == [(1, True, False)]
    glucose = released[0].readings()[0]
    assert "meal_postprandial" in glucose.flags


def test_records_behind_a_waiting_one_keep_their_order() -> None:
    # The meter sends 4 (context follows), 5, then 4's context: 4 and 5 leave together, in order.
    pairing = ContextPairing(timeout=10)
    assert pairing.measurement(record(4, context=True), AT, now=0) == []
    assert pairing.measurement(record(5), AT, now=0) == []
    assert pairing.last_sequence == 5
    released, _ = pairing.context(meal(4))
    assert summary(released) == [(4, True, False), (5, False, False)]


def test_a_context_for_a_later_record_waits_for_the_head() -> None:
    pairing = ContextPairing(timeout=10)
    pairing.measurement(record(4, context=True), AT, now=0)
    pairing.measurement(record(5, context=True), AT, now=0)
    released, paired = pairing.context(meal(5))
    assert (released, paired) == ([], True)  # 5 is complete, but 4 is still waiting ahead of it
    released, _ = pairing.context(meal(4))
    assert summary(released) == [(4, True, False), (5, True, False)]


def test_unmatched_and_repeated_contexts_are_refused() -> None:
    pairing = ContextPairing(timeout=10)
    assert pairing.context(meal(9)) == ([], False)  # no such record waiting
    pairing.measurement(record(4, context=True), AT, now=0)
    pairing.measurement(record(5, context=True), AT, now=0)
    assert pairing.context(meal(5)) == ([], True)
    assert pairing.context(meal(5)) == ([], False)  # 5 already has one


def test_flush_releases_everything_marking_the_missing_contexts() -> None:
    pairing = ContextPairing(timeout=10)
    pairing.measurement(record(1, context=True), AT, now=0)
    pairing.measurement(record(2), AT, now=0)
    assert summary(pairing.flush()) == [(1, False, True), (2, False, False)]
    assert len(pairing) == 0
    glucose = pairing.measurement(record(3), AT, now=0)[0].readings()[0]
    assert "context_missing" not in glucose.flags


def test_expiry_releases_a_record_whose_context_is_late() -> None:
    pairing = ContextPairing(timeout=10)
    pairing.measurement(record(1, context=True), AT, now=0)
    pairing.measurement(record(2, context=True), AT, now=4)
    assert pairing.next_deadline == 10
    assert pairing.expire(now=9.9) == []
    assert summary(pairing.expire(now=10)) == [(1, False, True)]
    assert pairing.next_deadline == 14
    [late] = pairing.expire(now=14)
    assert "context_missing" in late.readings()[0].flags
    assert pairing.next_deadline is None


def test_at_most_max_pending_wait() -> None:
    pairing = ContextPairing(timeout=10, max_pending=3)
    released = [r for s in range(1, 4) for r in pairing.measurement(record(s, context=True), AT, now=0)]
    assert released == []
    assert summary(pairing.measurement(record(4, context=True), AT, now=0)) == [(1, False, True)]
    assert len(pairing) == 3


@given(
    st.lists(st.tuples(st.booleans(), st.booleans()), min_size=1, max_size=30),
    st.permutations(list(range(30))),
    st.integers(1, 8),
)
def test_every_record_is_released_once_in_arrival_order(
    plan: list[tuple[bool, bool]], order: list[int], max_pending: int
) -> None:
    """Whatever arrives, and in whatever order the contexts come, each record leaves exactly once,
    in arrival order, with its context if that came while it waited."""
    pairing = ContextPairing(timeout=10, max_pending=max_pending)
    released: list[GlucoseRecord] = []
    contexts = [meal(s) for s, (follows, sent) in enumerate(plan) if follows and sent]
    contexts.sort(key=lambda c: order[c.sequence])
    for sequence, (follows, _sent) in enumerate(plan):
        released += pairing.measurement(record(sequence, context=follows), AT, now=sequence)
        while contexts and order[contexts[0].sequence] <= sequence:
            released += pairing.context(contexts.pop(0))[0]
    for context in contexts:
        released += pairing.context(context)[0]
    released += pairing.flush()
    assert [r.sequence for r in released] == list(range(len(plan)))
    for r in released:
        follows, sent = plan[r.sequence]
        assert r.context_missing == (follows and r.context is None)
        assert r.context is None or (follows and sent)

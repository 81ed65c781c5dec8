"""Building an exception never fails and never carries an unbounded untrusted value (issue 10 item 1).

``repr()`` of an integer of more than 4,300 digits raises ``ValueError``: an envelope version of
5,000 digits used to make ``UnsupportedVersion`` itself raise, and the ingest worker died.
"""

from __future__ import annotations

import re
from typing import Any

import cbor2
import pytest
from hypothesis import given
from hypothesis import strategies as st

from rpm_core.errors import (
    InvalidIdentifier,
    MalformedEnvelope,
    TopicError,
    UnknownKey,
    UnknownMetric,
    UnsupportedAlgorithm,
    UnsupportedVersion,
    describe,
)
from rpm_core.ids import agent_id

HUGE = 10**5000

HOSTILE = st.one_of(
    st.integers(),
    st.just(HUGE),
    st.just(-HUGE),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(),
    st.text(min_size=5000, max_size=6000),
    st.binary(),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=3),
    st.none(),
    st.booleans(),
    st.just(cbor2.undefined),
    st.builds(cbor2.CBORTag, st.integers(0, 2**64 - 1), st.just(HUGE)),
)


@given(HOSTILE, st.integers(1, 300))
def test_describe_is_bounded_printable_and_never_raises(value: Any, limit: int) -> None:
    text = describe(value, limit=limit)
    assert len(text) <= max(limit, 40) + 40
    assert text.isprintable()
    assert re.search(r"\d{20}", text) is None


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (2, "2"),
        (-7, "-7"),
        (True, "True"),
        (None, "None"),
        ("heart_rate", "'heart_rate'"),
        ("bad\nline", "a text of 8 characters"),
        ("it's", "a text of 4 characters"),
        ("x" * 41, "a text of 41 characters"),
        (HUGE, "an integer of 16610 bits"),
        (b"\x00" * 9, "a byte string of 9 bytes"),
        ([1, 2], "an array of 2 items"),
        ({1: 2}, "a map of 1 entries"),
        (float("nan"), "a float"),
        (cbor2.undefined, "a value of type undefined_type"),
    ],
    ids=lambda v: describe(v) if not isinstance(v, str) else v[:20],  # pytest's own str() of HUGE raises
)
def test_describe_shows_small_plain_values_and_names_the_rest(value: Any, expected: str) -> None:
    assert describe(value) == expected


@given(HOSTILE)
def test_every_exception_with_an_untrusted_value_builds_a_bounded_message(value: Any) -> None:
    for exc in (
        UnsupportedVersion(value),
        UnsupportedAlgorithm(value),
        UnknownKey(value if isinstance(value, str) else "k"),
        UnknownMetric(value if isinstance(value, str) else "m"),
        InvalidIdentifier("agent", value),
        TopicError(value if isinstance(value, str) else "t", "why"),
        MalformedEnvelope(value if isinstance(value, str) else "why"),
    ):
        assert len(str(exc)) <= 400
        assert exc.reason  # the stable code feeds metrics and dead letters


def test_the_exception_keeps_the_value_as_data() -> None:
    exc = UnsupportedVersion(HUGE)
    assert exc.version == HUGE  # data for callers, not text
    assert str(exc) == "unsupported envelope version an integer of 16610 bits"


def test_an_invalid_identifier_of_any_type_is_refused_cleanly() -> None:
    with pytest.raises(InvalidIdentifier, match="an integer of 16610 bits"):
        agent_id(HUGE)  # type: ignore[arg-type]

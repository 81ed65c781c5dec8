from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rpm_core.backoff import BackoffPolicy, backoff_delay

POLICY = BackoffPolicy(base_s=0.1, factor=2.0, cap_s=5.0)


class Hinted(Exception):
    retry_after_s = 2.5


class Transient(Exception):
    transient = True


def test_grows_exponentially_then_caps() -> None:
    assert [backoff_delay(None, a, policy=POLICY) for a in range(8)] == pytest.approx(
        [0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 5.0, 5.0]
    )


def test_the_error_decides() -> None:
    assert backoff_delay(Hinted(), 0, policy=POLICY) == 2.5
    assert backoff_delay(Transient(), 9, policy=POLICY) == pytest.approx(0.1)
    assert backoff_delay(OSError(), 3, policy=POLICY) == pytest.approx(0.8)


@given(st.integers(min_value=0, max_value=10**6), st.floats(min_value=0, max_value=0.999))
def test_bounded_and_non_negative(attempt: int, jitter: float) -> None:
    assert 0 <= backoff_delay(None, attempt, policy=POLICY, jitter=jitter) <= POLICY.cap_s


def test_rejects_nonsense() -> None:
    with pytest.raises(ValueError):
        backoff_delay(None, -1)
    with pytest.raises(ValueError):
        backoff_delay(None, 0, jitter=1.0)
    with pytest.raises(ValueError):
        BackoffPolicy(base_s=0)

"""Retry delays as a pure function of the error and the attempt (shared by BLE, MQTT and DB reconnects).

A caller that failed asks :func:`backoff_delay` how long to wait before attempt ``attempt + 1``;
nothing here sleeps, so the policy is unit-tested without a clock. The delay grows exponentially
from ``policy.base_s`` by ``policy.factor`` up to ``policy.cap_s``; an error may shorten or pin it:

* an error carrying ``retry_after_s`` (a float attribute, e.g. a broker or server hint) is waited
  for exactly, capped by the policy;
* an error whose ``transient`` attribute is True (a dropped connection that usually comes back at
  once, e.g. a lock timeout or a serialization failure) retries from the base delay every time.

Jitter is the caller's business: pass ``jitter`` in [0, 1) (a random draw) and the delay is
reduced by that fraction, spreading the retries of many clients (full jitter when 1.0 is approached).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

__all__ = ["DEFAULT_POLICY", "BackoffPolicy", "backoff_delay"]


@dataclass(frozen=True, slots=True)
class BackoffPolicy:
    base_s: float = 0.1
    factor: float = 2.0
    cap_s: float = 30.0

    def __post_init__(self) -> None:
        if not (0 < self.base_s <= self.cap_s) or self.factor < 1:
            raise ValueError("need 0 < base_s <= cap_s and factor >= 1")


DEFAULT_POLICY: Final = BackoffPolicy()


def backoff_delay(
    error: BaseException | None, attempt: int, *, policy: BackoffPolicy = DEFAULT_POLICY, jitter: float = 0.0
) -> float:
    """Seconds to wait after failed attempt number ``attempt`` (0 = the first failure)."""
    if attempt < 0:
        raise ValueError("attempt must be >= 0")
    if not 0.0 <= jitter < 1.0:
        raise ValueError("jitter must be in [0, 1)")
    hint = getattr(error, "retry_after_s", None)
    if isinstance(hint, int | float) and not isinstance(hint, bool) and hint >= 0:
        return min(float(hint), policy.cap_s)
    if getattr(error, "transient", False) is True:
        attempt = 0
    # Exponent bounded so the float never overflows however long an outage lasts.
    delay = min(policy.base_s * policy.factor ** min(attempt, 64), policy.cap_s)
    return delay * (1.0 - jitter)

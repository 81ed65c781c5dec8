"""One interface for every way a notification leaves the worker.

A :class:`Channel` sends one :class:`Outgoing` message and returns a :class:`Receipt`, or raises
:class:`~consult.notify.errors.DeliveryError` (permanent or not). Just before the part of a send
that cannot be taken back (the SMTP data's final dot, the gateway request) it calls
``commit_point()``, which records the attempt's phase as ``committing`` and returns False when the
attempt no longer owns its row: the channel then gives up without sending. A worker killed before
the commit point left nothing at the provider, so its attempt is retried as if it never happened.

``idempotent`` says whether the provider itself drops a second copy with the same
``idempotency_key`` (a gateway honouring ``Idempotency-Key``): then a send whose outcome is
unknown is simply repeated.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

__all__ = ["Channel", "CommitPoint", "InAppChannel", "Outgoing", "Receipt"]

CommitPoint = Callable[[], bool]


@dataclass(frozen=True, slots=True)
class Outgoing:
    idempotency_key: str
    channel: str
    to: str  # email address, E.164 number, push token; '' for in-app
    subject: str
    text: str
    urgent: bool = False


@dataclass(frozen=True, slots=True)
class Receipt:
    provider_ref: str | None  # the provider's id of the message (SMTP: the Message-ID)
    delivered: bool = False  # the provider confirmed delivery (in-app: written)


class Channel(Protocol):
    @property
    def name(self) -> str: ...

    @property
    def idempotent(self) -> bool: ...

    def send(self, msg: Outgoing, commit_point: CommitPoint) -> Receipt: ...

    def close(self) -> None: ...


class InAppChannel:
    """In-app notifications are rows the API shows: writing the row was the delivery."""

    name = "in_app"
    idempotent = True

    def send(self, msg: Outgoing, commit_point: CommitPoint) -> Receipt:
        return Receipt(provider_ref=None, delivered=True)

    def close(self) -> None:
        return None

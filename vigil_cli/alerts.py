"""``vigil alerts``: the alert commands with the engine's escalation sink wired in.

The composition root of the alerts -> consult seam: ``alerts`` owns the escalation walk and the
``EscalationSink`` Protocol, ``consult`` implements sinks, and neither imports the other (import-linter
contracts). Here ``vigil alerts run`` gets :class:`consult.notify.sink.NotifyingSink`, so due steps
become notifications in the outbox (delivered by ``vigil notify run``). mypy checks that the sink
satisfies the Protocol at this call.
"""

from __future__ import annotations

from alerts.cli import build_app
from alerts.escalation import EscalationSink

__all__ = ["app", "notifying_sink"]


def notifying_sink() -> EscalationSink:
    """The engine's sink: queue each due step's notifications (imported when the engine starts)."""
    from consult.notify.sink import NotifyingSink  # only the engine needs it

    return NotifyingSink()


app = build_app(notifying_sink)

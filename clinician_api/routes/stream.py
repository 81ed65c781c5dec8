"""``GET /api/v1/alerts/stream``: server-sent events of the caller's panel's alerts.

Events carry ids and codes only (``alert``: alert id, patient id, event type, severity, state);
the page fetches what changed through the audited routes. ``ready`` is sent once the stream is
subscribed (nothing after it is missed), ``resync`` when notices may have been lost (refetch the
queue), ``overflow`` before the server drops a client that does not keep up. A stream lasts
``api_stream_max_s`` and then ends; EventSource reconnects, which authenticates the session again.
Streaming does not count as activity: an open page still logs off after the idle time.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Depends
from fastapi.responses import StreamingResponse

from clinician_api.audit import recorded
from clinician_api.auth.roles import Permission
from clinician_api.context import Db, Info, Services, Svc
from clinician_api.live import Subscription
from clinician_api.security import Principal, require
from store import care_teams
from store.channels import AlertNotice

__all__ = ["router"]

router = APIRouter(prefix="/alerts", tags=["alerts"])

StreamReader = Annotated[Principal, Depends(require(Permission.ALERTS_READ, touch=False))]
_READY_WAIT_S = 10.0


def _panel(who: StreamReader, conn: Db, svc: Svc, info: Info) -> frozenset[str]:
    with recorded(conn, who, info, svc.clock, action="alerts.stream", object_type="alert_queue") as rec:
        ids = care_teams.panel_patient_ids(conn, who.user_id, who.org_id)
        rec.subjects = ids
    return frozenset(ids)


def _event(name: str, data: dict[str, object], event_id: str | None = None) -> str:
    head = f"id: {event_id}\n" if event_id else ""
    return f"{head}event: {name}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"


def _alert(n: AlertNotice) -> str:
    data: dict[str, object] = {
        "alert_id": n.alert_id,
        "patient_id": n.patient_id,
        "event": n.event,
        "severity": n.severity,
        "state": n.state,
    }
    return _event("alert", data)


async def _events(svc: Services, who: Principal, sub: Subscription) -> AsyncIterator[str]:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + svc.settings.api_stream_max_s
    try:
        await asyncio.wait_for(svc.hub.ready.wait(), _READY_WAIT_S)
    except TimeoutError:
        yield _event("resync", {"reason": "listener_unavailable"})
    yield _event("ready", {"retry_ms": 3000})
    while (remaining := deadline - loop.time()) > 0:
        try:
            item = await asyncio.wait_for(sub.queue.get(), min(svc.settings.api_stream_ping_s, remaining))
        except TimeoutError:
            yield ": ping\n\n"
            continue
        if item == "overflow":
            yield _event("overflow", {})
            return
        if item == "resync":
            yield _event("resync", {"reason": "listener_reconnected"})
            continue
        assert isinstance(item, AlertNotice)  # noqa: S101 - the queue holds notices and markers only
        yield _alert(item)
    yield _event("end", {"reason": "max_duration"})


@router.get(
    "/stream",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}}},
    summary="Live updates of my panel's alerts (server-sent events)",
)
async def stream(who: StreamReader, panel: Annotated[frozenset[str], Depends(_panel)], svc: Svc) -> StreamingResponse:
    async def body() -> AsyncIterator[str]:
        with svc.hub.subscribe(who.org_id, panel) as sub:
            async for chunk in _events(svc, who, sub):
                yield chunk

    return StreamingResponse(body(), media_type="text/event-stream", headers={"X-Accel-Buffering": "no"})

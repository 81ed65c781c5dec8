"""The call in the browser: the join page, the signalling WebSocket, and the dashboard's consult pages.

- ``GET /consult/rooms/{room_id}/join`` the page a join link opens (the token stays in the URL
  fragment; the page's script sends it in the first WebSocket message). It shows no PHI, so it
  needs no sign-in: a patient or guest holds only their link. The waiting room and the call are
  both this page (its state follows the signalling messages).
- ``WS /consult/rooms/{room_id}/ws`` the signalling connection (docs/video.md's protocol), handed to
  this process's :class:`~consult.video.hub.SignallingHub`. A cross-origin handshake is refused
  (403) before anything runs. A signed-in session is read when present: a clinician's seat joins
  only with that clinician's session, and every join, admitted or refused, writes an audit row.
- ``GET /consults`` and ``GET /consults/{request_id}`` the dashboard's list and one consult (start
  now, book a slot, invite, links, the call's events); they call the API's route functions.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Annotated
from urllib.parse import urlparse

from fastapi import APIRouter, Depends, Request, WebSocket, WebSocketDisconnect
from fastapi.responses import HTMLResponse, RedirectResponse
from starlette.requests import Request as HttpRequest

from clinician_api.access import Resolved, guard
from clinician_api.auth.roles import Permission, allowed
from clinician_api.context import Db, Info, RequestInfo, Services, Svc
from clinician_api.errors import ApiError
from clinician_api.routes import consults as consult_routes
from clinician_api.security import Principal, authenticate, require
from clinician_api.video import CALLER, CallCaller, Video
from clinician_api.web.render import Pages
from store import users

__all__ = ["router"]

router = APIRouter(include_in_schema=False)

Booker = Annotated[Principal, Depends(require(Permission.CONSULTS_BOOK))]
ConsultPage = Annotated[Resolved, Depends(guard("consult", "request_id", Permission.PANEL_READ))]
Joiner = Annotated[Resolved, Depends(guard("consult", "request_id", Permission.CONSULTS_BOOK))]
VideoDep = consult_routes.VideoDep


def _pages(request: Request) -> Pages:
    pages: Pages = request.app.state.pages
    return pages


@router.get("/consult/rooms/{room_id}/join", response_class=HTMLResponse)
def join_page(request: Request, room_id: str) -> HTMLResponse:
    valid = 16 <= len(room_id) <= 64 and all(c.isascii() and (c.isalnum() or c in "-_") for c in room_id)
    return _pages(request).render(
        "call.html", {"me": None, "page": "call", "room_id": room_id if valid else ""}, status=200 if valid else 404
    )


class _SocketTransport:
    """The hub's :class:`~consult.video.hub.Transport` over a Starlette WebSocket."""

    def __init__(self, ws: WebSocket) -> None:
        self._ws = ws

    async def send_text(self, text: str) -> None:
        await self._ws.send_text(text)

    async def close(self, code: int, reason: str) -> None:
        await self._ws.close(code, reason)


def _same_origin(ws: WebSocket) -> bool:
    origin = ws.headers.get("origin")
    if origin is None:  # not a browser (a browser always sends Origin on a WebSocket handshake)
        return True
    host = ws.headers.get("host", "")
    return urlparse(origin).netloc.lower() == host.lower()


def _signed_in(ws: WebSocket, svc: Services) -> Principal | None:
    """The session on this socket, if any (read only: a WebSocket carries no CSRF header)."""
    scope = {**ws.scope, "type": "http", "method": "GET"}
    try:
        with svc.pool.connection() as conn:
            who = authenticate(HttpRequest(scope), conn, svc)
    except ApiError:
        return None
    return who if who.second_factor_ok else None


@router.websocket("/consult/rooms/{room_id}/ws")
async def signalling(ws: WebSocket, room_id: str) -> None:
    if not _same_origin(ws):
        await ws.close(code=4403, reason="origin")
        return
    svc: Services = ws.app.state.services
    video: Video = ws.app.state.video
    await ws.accept()
    who = await asyncio.to_thread(_signed_in, ws, svc)
    info = RequestInfo(
        request_id=uuid.uuid4().hex,
        client_addr=ws.client.host if ws.client else None,
        method="WS",
        path=ws.url.path,
        user_agent=ws.headers.get("user-agent"),
    )
    CALLER.set(CallCaller(who, info))
    conn = await video.hub.connect(room_id, _SocketTransport(ws))
    try:
        while True:
            message = await ws.receive()
            if message["type"] == "websocket.disconnect":
                break
            data = message.get("text")
            if data is None:
                data = message.get("bytes") or b""
            await video.hub.receive(conn, data)
    except WebSocketDisconnect:
        pass
    finally:
        await video.hub.disconnect(conn)


# ---- dashboard pages ----------------------------------------------------------------------------


def _me(conn: Db, who: Principal) -> dict[str, object]:
    """What the page header shows (as the dashboard's other pages)."""
    user = users.get_user(conn, who.user_id)
    return {
        "user_id": who.user_id,
        "name": user.display_name if user else who.user_id,
        "role": who.role,
        "can": {p.value.replace(".", "_"): allowed(who.role, p, who.scopes) for p in Permission},
    }


@router.get("/consults", response_class=HTMLResponse)
def consults_page(request: Request, who: Booker, conn: Db, svc: Svc, info: Info) -> HTMLResponse:
    items = consult_routes.my_consults(who, conn, svc, info, status=None)
    return _pages(request).render(
        "consults.html", {"me": _me(conn, who), "page": "consults", "items": items, "now": svc.clock.now()}
    )


@router.get("/consults/{request_id}/join")
def join_redirect(target: Joiner, conn: Db, svc: Svc, info: Info, video: VideoDep) -> RedirectResponse:
    """The portal's join button: the patient's own link is minted (audited ``consult.link``) and the
    browser goes to the waiting room with it in the fragment. Staff go to the consult's page (their
    seat is taken with a POST there)."""
    if not target.caller.is_patient:
        return RedirectResponse(f"/consults/{target.object_id}", status_code=303)
    link = consult_routes.my_link(target, conn, svc, info, video)
    return RedirectResponse(link.join_path, status_code=303)


@router.get("/consults/{request_id}", response_class=HTMLResponse)
def consult_page(request: Request, target: ConsultPage, conn: Db, svc: Svc, info: Info) -> HTMLResponse:
    consult = consult_routes.get_consult(target, conn, svc, info)
    who = target.caller
    return _pages(request).render(
        "consult.html",
        {
            "me": _me(conn, who),
            "page": "consults",
            "c": consult,
            "can_run": allowed(who.role, Permission.CONSULTS, who.scopes),
            "can_book": allowed(who.role, Permission.CONSULTS_BOOK, who.scopes),
            "now": svc.clock.now(),
        },
    )

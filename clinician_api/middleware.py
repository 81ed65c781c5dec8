"""The edge of every response: a request id, security headers, no caching of PHI, and a problem+json
500 for anything that escaped (so even a crash carries the headers and says nothing of its cause).

Pure ASGI (no ``BaseHTTPMiddleware``): it wraps ``send`` to add headers and never buffers a body,
so the live stream passes through untouched.
"""

from __future__ import annotations

import json
import logging
import re
import uuid
from typing import Final

from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["CSP", "MAX_BODY_BYTES", "EdgeMiddleware", "RequestGuard"]

log = logging.getLogger(__name__)

# No inline script or style anywhere: pages load their own files from the app.
CSP: Final = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "font-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
_STATIC: Final = (
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
    (b"content-security-policy", CSP.encode()),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"cross-origin-resource-policy", b"same-origin"),
    (b"permissions-policy", b"geolocation=(), payment=(), usb=()"),
)


class EdgeMiddleware:
    def __init__(self, app: ASGIApp, *, hsts_max_age_s: int | None) -> None:
        self.app = app
        self._hsts = None if hsts_max_age_s is None else f"max-age={hsts_max_age_s}; includeSubDomains".encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id
        started = False

        async def send_with_headers(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                headers = list(message.get("headers", []))
                names = {k.lower() for k, _ in headers}
                headers.extend(h for h in _STATIC if h[0] not in names)
                headers.append((b"x-request-id", request_id.encode()))
                if b"cache-control" not in names:
                    headers.append((b"cache-control", b"no-store"))
                if self._hsts is not None:
                    headers.append((b"strict-transport-security", self._hsts))
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, send_with_headers)
        except Exception as exc:
            log.exception("unhandled %s in request %s", type(exc).__name__, request_id)
            if started:
                return
            body = json.dumps(
                {
                    "type": "https://vigil.invalid/problems/internal",
                    "title": "Internal Server Error",
                    "status": 500,
                    "detail": "an unexpected error occurred",
                    "instance": scope.get("path", ""),
                    "code": "internal",
                }
            ).encode()
            await send_with_headers(
                {
                    "type": "http.response.start",
                    "status": 500,
                    "headers": [
                        (b"content-type", b"application/problem+json"),
                        (b"content-length", str(len(body)).encode()),
                    ],
                }
            )
            await send_with_headers({"type": "http.response.body", "body": body})


# No request the API serves needs more (a policy or a settings document is a few kilobytes).
MAX_BODY_BYTES: Final = 1 << 20
_NUL_ESCAPE: Final = re.compile(rb"\\u0000", re.IGNORECASE)


def _problem(status: int, title: str, detail: str, code: str, path: str) -> tuple[list[tuple[bytes, bytes]], bytes]:
    body = json.dumps(
        {
            "type": "https://vigil.invalid/problems/" + code.replace("_", "-"),
            "title": title,
            "status": status,
            "detail": detail,
            "instance": path,
            "code": code,
        }
    ).encode()
    headers = [(b"content-type", b"application/problem+json"), (b"content-length", str(len(body)).encode())]
    return headers, body


class RequestGuard:
    """Refuses, before any route sees them, what no route can store: a NUL character in the query
    string or the body (PostgreSQL text cannot hold one; 400/422 instead of a database error), and
    bodies over :data:`MAX_BODY_BYTES` (413). Path parameters are left to the routes: a NUL in an
    id is an audited 404 like any other id that names nothing. ``large`` names the POST paths that
    take a file (a message attachment) with their own limit; their bodies are binary, so only the
    size is checked here (the route checks the content)."""

    def __init__(
        self, app: ASGIApp, *, max_body: int = MAX_BODY_BYTES, large: tuple[tuple[re.Pattern[str], int], ...] = ()
    ) -> None:
        self.app = app
        self.max_body = max_body
        self.large = large

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = str(scope.get("path", ""))
        query = bytes(scope.get("query_string", b"")).lower()
        if b"%00" in query or b"\x00" in query:
            await self._refuse(send, 400, "Bad Request", "the query holds a NUL character", "nul_character", path)
            return
        if scope.get("method") not in ("POST", "PUT", "PATCH", "DELETE"):
            await self.app(scope, receive, send)
            return
        limit, binary = self._limit(scope, path)
        chunks: list[bytes] = []
        size = 0
        more = True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                await self.app(scope, receive, send)  # disconnected: let the app see it
                return
            chunk = bytes(message.get("body", b""))
            size += len(chunk)
            if size > limit:
                await self._refuse(send, 413, "Content Too Large", "the body is too large", "too_large", path)
                return
            chunks.append(chunk)
            more = bool(message.get("more_body", False))
        body = b"".join(chunks)
        if not binary and (b"\x00" in body or _NUL_ESCAPE.search(body)):
            await self._refuse(
                send, 422, "Unprocessable Content", "a value holds a NUL character", "nul_character", path
            )
            return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    def _limit(self, scope: Scope, path: str) -> tuple[int, bool]:
        """The body limit of this request, and whether its body is a file (binary)."""
        if scope.get("method") == "POST":
            for pattern, cap in self.large:
                if pattern.fullmatch(path):
                    return cap, True
        return self.max_body, False

    @staticmethod
    async def _refuse(send: Send, status: int, title: str, detail: str, code: str, path: str) -> None:
        headers, body = _problem(status, title, detail, code, path)
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

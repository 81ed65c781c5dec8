"""The edge of every response: a request id, security headers, no caching of PHI, and a problem+json
500 for anything that escaped (so even a crash carries the headers and says nothing of its cause).

Pure ASGI (no ``BaseHTTPMiddleware``): it wraps ``send`` to add headers and never buffers a body,
so the live stream passes through untouched.
"""

from __future__ import annotations

import json
import logging
import uuid
from typing import Final

from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["CSP", "EdgeMiddleware"]

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

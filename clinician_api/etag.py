"""Strong ETags over a response body, and ``If-None-Match`` evaluation (RFC 9110 13.1.2)."""

from __future__ import annotations

import hashlib

__all__ = ["etag_for", "not_modified"]


def etag_for(body: bytes) -> str:
    return '"' + hashlib.sha256(body).hexdigest()[:32] + '"'


def not_modified(if_none_match: str | None, etag: str) -> bool:
    """True when the client's ``If-None-Match`` names ``etag`` (weak comparison, as GET allows)."""
    if not if_none_match:
        return False
    if if_none_match.strip() == "*":
        return True
    tags = {t.strip().removeprefix("W/") for t in if_none_match.split(",")}
    return etag in tags

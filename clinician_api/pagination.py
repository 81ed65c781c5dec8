"""Opaque cursors for keyset pagination: the last row's sort key, signed and bound to the list and
the caller, so a cursor cannot be forged, edited, or replayed on another list or by another user.

``Page`` is the response shape of every list: ``items`` and ``next_cursor`` (null on the last
page). Lists fetch ``limit + 1`` rows to know whether there is a next page.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Sequence
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, Field

from clinician_api.errors import BadRequest
from clinician_api.keys import ApiKeys, b64d, b64e

__all__ = ["CursorCodec", "Page", "page_of"]

T = TypeVar("T")


class Page(BaseModel, Generic[T]):
    items: list[T]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null on the last page.")


class CursorCodec:
    def __init__(self, keys: ApiKeys) -> None:
        self._keys = keys

    def encode(self, kind: str, caller: str, key: Sequence[Any]) -> str:
        body = json.dumps([1, kind, caller, list(key)], separators=(",", ":"), default=str).encode()
        return b64e(body) + "." + b64e(self._keys.sign(body))

    def decode(self, kind: str, caller: str, cursor: str) -> list[Any]:
        """The sort key in ``cursor``; :class:`BadRequest` for anything not made by :meth:`encode`
        for this list and caller."""
        key = self._open(kind, caller, cursor)
        if key is None:
            raise BadRequest("the cursor is not valid for this list", code="invalid_cursor")
        return key

    def _open(self, kind: str, caller: str, cursor: str) -> list[Any] | None:
        try:
            body_text, mac_text = cursor.split(".", 1)
            body, mac = b64d(body_text), b64d(mac_text)
            if not hmac.compare_digest(mac, self._keys.sign(body)):
                return None
            version, got_kind, got_caller, key = json.loads(body)
        except (ValueError, TypeError):
            return None
        if version != 1 or got_kind != kind or got_caller != caller or not isinstance(key, list):
            return None
        return key


def page_of(rows: Sequence[T], limit: int) -> tuple[list[T], bool]:
    """The first ``limit`` rows and whether more followed (the query fetched ``limit + 1``)."""
    return list(rows[:limit]), len(rows) > limit

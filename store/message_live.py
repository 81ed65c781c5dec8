"""Live message notices for the API: LISTEN on the channel migration 0042's triggers NOTIFY.

Notices carry ids only: a message version was written (``kind='m'``), or a participant was added
or removed (``kind='p'``). One listener per API process fans them out to the open pages, which
fetch what changed through the audited routes. A lost connection ends the iterator with
:class:`~store.errors.DatabaseUnavailable`; the caller reconnects and tells its pages to refetch.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Final

import psycopg
from psycopg import sql

from store.errors import DatabaseUnavailable

__all__ = ["MESSAGES_CHANNEL", "MessageNotice", "message_notices", "parse_message_notice"]

log = logging.getLogger(__name__)

MESSAGES_CHANNEL: Final = "vigil_messages"


@dataclass(frozen=True, slots=True)
class MessageNotice:
    kind: str  # 'm' (a message version) | 'p' (a participant change)
    org_id: str
    thread_id: str
    message_id: str | None = None
    seq: int | None = None
    version: int | None = None
    author_id: str | None = None
    deleted: bool = False
    user_id: str | None = None  # 'p': whose participation changed
    active: bool = True  # 'p': added (True) or removed (False)


def parse_message_notice(payload: str) -> MessageNotice | None:
    """The notice in a payload, or None for one that is not (logged by size, skipped)."""
    try:
        doc = json.loads(payload)
        kind = str(doc["k"])
        if kind == "m":
            return MessageNotice(
                "m",
                str(doc["org_id"]),
                str(doc["thread_id"]),
                message_id=str(doc["message_id"]),
                seq=int(doc["seq"]),
                version=int(doc["version"]),
                author_id=str(doc["author_id"]),
                deleted=bool(doc["deleted"]),
            )
        if kind == "p":
            return MessageNotice(
                "p", str(doc["org_id"]), str(doc["thread_id"]), user_id=str(doc["user_id"]), active=bool(doc["active"])
            )
        raise ValueError(kind)  # noqa: TRY301 - one path for every malformed payload
    except (ValueError, KeyError, TypeError):
        log.warning("ignored a malformed notice on %s (%d bytes)", MESSAGES_CHANNEL, len(payload))
        return None


async def message_notices(url: str) -> AsyncIterator[MessageNotice | None]:
    """Notices as they arrive; first None once the LISTEN is in place (nothing after it is missed)."""
    try:
        conn = await psycopg.AsyncConnection.connect(url, autocommit=True, application_name="vigil-api-messages")
    except psycopg.OperationalError as exc:
        raise DatabaseUnavailable(f"database unavailable: {type(exc).__name__}") from exc
    try:
        async with conn:
            await conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(MESSAGES_CHANNEL)))
            yield None
            async for n in conn.notifies():
                notice = parse_message_notice(n.payload)
                if notice is not None:
                    yield notice
    except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
        raise DatabaseUnavailable(f"database unavailable: {type(exc).__name__}") from exc

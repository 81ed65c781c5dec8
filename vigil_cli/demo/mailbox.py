"""The demo's mailbox: a local SMTP server (aiosmtpd) that the notification worker delivers to.

It listens on 127.0.0.1 only, accepts every message, keeps each one as ``mailbox/NNNN.eml`` in the
demo directory (open them with any mail program, or read them as text) and remembers who it was for
and its subject, which the demo shows as it arrives. Plain SMTP without TLS: the worker is told
``notify_smtp_security = "none"``, which only a server on this machine may be given.
"""

from __future__ import annotations

import email
import email.policy
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller

__all__ = ["Mail", "Mailbox"]


@dataclass(frozen=True, slots=True)
class Mail:
    path: Path
    to: tuple[str, ...]
    subject: str


class _Handler:
    def __init__(self, box: Mailbox) -> None:
        self.box = box

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.box.keep(tuple(envelope.rcpt_tos), bytes(envelope.content))
        return "250 OK"


class Mailbox:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.received: list[Mail] = []
        self._lock = threading.Lock()
        self._controller: Controller | None = None
        self.port = 0

    def start(self, port: int) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        self._controller = Controller(_Handler(self), hostname="127.0.0.1", port=port)
        self._controller.start()
        self.port = port

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def keep(self, to: tuple[str, ...], raw: bytes) -> None:
        message = email.message_from_bytes(raw, policy=email.policy.default)
        with self._lock:
            existing = len(list(self.directory.glob("*.eml")))
            path = self.directory / f"{existing + 1:04d}.eml"
            path.write_bytes(raw)
            self.received.append(Mail(path, to, str(message.get("subject", ""))))

    def since(self, seen: int) -> list[Mail]:
        with self._lock:
            return list(self.received[seen:])

"""A real SMTP server for tests: aiosmtpd on a free port, STARTTLS required, with a certificate
from a CA the test makes (the worker is given the CA to trust, as a private relay's would be).

It records every message it *accepts* (its reply to the end of data is 250), so ``received`` is
what a mail system would deliver. Addresses starting with ``bounce`` are refused with 550 (a
permanent failure) and ``flaky`` with 451 (transient). Two gates let a test hold a sender at a
known point: at RCPT (mid-transaction: the server has taken nothing yet) or after the end of data
(the server has taken the message, like an MTA that queued it, and holds back its 250 reply until
released: the window in which the sender cannot know). A held sender is a barrier: the test waits
for ``rcpt_gate.held``/``data_gate.held``, acts (kills the worker), then releases.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import ssl
import threading
import time
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from aiosmtpd.controller import Controller

from broker_config.ca import create_ca, issue_server_certificate
from vigil_testkit.net import free_port

__all__ = ["Received", "SmtpServer"]


@dataclass(frozen=True)
class Received:
    message_id: str
    to: tuple[str, ...]
    subject: str
    body: str
    raw: bytes
    at: float  # time.time() when accepted
    tls: bool


class _Gate:
    """Holds senders at one point until released (async side in the server's loop)."""

    def __init__(self) -> None:
        self.enabled = False
        self.held = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._event: asyncio.Event | None = None

    async def wait(self) -> None:
        if not self.enabled:
            return
        self._loop = asyncio.get_running_loop()
        self._event = asyncio.Event()
        self.held.set()
        await self._event.wait()

    def release(self) -> None:
        self.enabled = False
        if self._loop is not None and self._event is not None:
            self._loop.call_soon_threadsafe(self._event.set)


class _Handler:
    def __init__(self, server: SmtpServer) -> None:
        self.s = server

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address.startswith("bounce"):
            return "550 5.1.1 mailbox unavailable"
        if address.startswith("flaky"):
            return "451 4.3.0 try again later"
        self.s.transports.add(server.transport)
        await self.s.rcpt_gate.wait()
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        raw = envelope.original_content or envelope.content
        msg = email.message_from_bytes(raw, policy=email.policy.default)
        body = msg.get_body(preferencelist=("plain",))
        rec = Received(
            message_id=str(msg.get("Message-ID", "")),
            to=tuple(envelope.rcpt_tos),
            subject=str(msg.get("Subject", "")),
            body=body.get_content() if body is not None else "",
            raw=raw,
            at=time.time(),
            tls=session.ssl is not None,
        )
        with self.s.lock:
            self.s.messages.append(rec)
            self.s.arrived.set()
        # Taken (as an MTA that has queued it); the gate only delays the 250 its sender waits for.
        await self.s.data_gate.wait()
        return "250 OK queued"


class SmtpServer:
    def __init__(self, workdir: Path) -> None:
        self.host = "127.0.0.1"
        self.port = free_port()
        self.messages: list[Received] = []
        self.lock = threading.Lock()
        self.arrived = threading.Event()
        self.rcpt_gate = _Gate()
        self.transports: set = set()  # server sides of the connections seen (restart() cuts them)
        self.data_gate = _Gate()
        now = datetime.now(UTC)
        ca = create_ca(now=now, common_name="Test SMTP CA")
        cert = issue_server_certificate(ca, [self.host, "localhost"], now=now)
        workdir.mkdir(parents=True, exist_ok=True)
        self.ca_file = workdir / "smtp-ca.pem"
        self.ca_file.write_bytes(ca.cert_pem())
        cert.write(workdir / "smtp.pem", workdir / "smtp.key")
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(workdir / "smtp.pem", workdir / "smtp.key")
        self._tls = ctx
        self._controller = self._new_controller()

    def _new_controller(self) -> Controller:
        return Controller(
            _Handler(self), hostname=self.host, port=self.port, tls_context=self._tls, require_starttls=True
        )

    def restart(self) -> None:
        """Stop and start again on the same port: every open connection is cut."""
        loop = self._controller.loop
        done = threading.Event()

        def cut() -> None:
            for t in self.transports:
                t.close()
            self.transports.clear()
            done.set()

        loop.call_soon_threadsafe(cut)
        done.wait(10)
        self._controller.stop()
        self._controller = self._new_controller()
        self._controller.start()

    def start(self) -> SmtpServer:
        self._controller.start()
        return self

    def stop(self) -> None:
        self.rcpt_gate.release()
        self.data_gate.release()
        if self._controller.server is not None:  # stopping twice is fine
            self._controller.stop()

    # -- what arrived ----------------------------------------------------------------------------

    @property
    def received(self) -> list[Received]:
        with self.lock:
            return list(self.messages)

    def count(self) -> int:
        with self.lock:
            return len(self.messages)

    def by_message_id(self) -> Counter[str]:
        """How many copies of each Message-ID arrived (what a deduplicating mailbox shows once)."""
        with self.lock:
            return Counter(m.message_id for m in self.messages)

    def wait_for(self, n: int, timeout: float = 30.0) -> list[Received]:
        """Block until at least ``n`` messages were accepted (a positive signal, bounded in time)."""
        deadline = time.monotonic() + timeout
        while True:
            with self.lock:
                if len(self.messages) >= n:
                    return list(self.messages)
                self.arrived.clear()
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"{self.count()} of {n} messages arrived in {timeout}s")
            self.arrived.wait(min(left, 0.5))

"""Email over SMTP with STARTTLS (or implicit TLS), one connection reused across messages.

The message's Message-ID is derived from the notification's idempotency key, so every attempt of
one notification carries the same Message-ID. The send is split around its commit point: MAIL,
RCPT, DATA and the message text go out first; then ``commit_point()`` records that the attempt is
committing; only then the final ``.`` that asks the server to take the message. Before that dot
the server has accepted nothing (RFC 5321 4.1.1.4: a transaction without its end-of-data is
discarded when the connection drops), so an attempt that dies earlier is known not delivered.
Between the dot and the worker recording ``sent`` the outcome is unknown: see docs/notifications.md.

Reply codes: 2xx done; 4xx transient (retried with backoff); 5xx permanent (``failed``), except
authentication failures, which are the deployment's to fix and so are retried.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import re
import smtplib
import socket
import ssl
import time
from dataclasses import dataclass
from email.message import EmailMessage
from email.policy import SMTP as SMTP_POLICY
from email.utils import formatdate, parseaddr
from pathlib import Path
from typing import Final

from consult.notify.channels import CommitPoint, Outgoing, Receipt
from consult.notify.errors import DeliveryError

__all__ = ["SmtpChannel", "SmtpOptions", "message_id"]

log = logging.getLogger(__name__)

_ADDRESS: Final = re.compile(r"^[^@\s<>()\[\],;:\"\\]{1,64}@[A-Za-z0-9.-]{1,253}$")
_DOT_LINE: Final = re.compile(rb"(?m)^\.")


@dataclass(frozen=True, slots=True, kw_only=True)
class SmtpOptions:
    host: str
    port: int = 587
    security: str = "starttls"  # 'starttls' (required) | 'tls' (implicit, port 465) | 'none' (tests, local relays)
    username: str | None = None
    password: str | None = None
    sender: str = "Vigil <vigil@localhost>"
    ca_file: Path | None = None  # trust this CA instead of the system's (a private relay)
    timeout_s: float = 30.0
    local_hostname: str | None = None
    probe_after_s: float = 10.0  # a connection idle longer is checked with NOOP before it is used


def message_id(idempotency_key: str, domain: str) -> str:
    """The Message-ID of every attempt of one notification (the key itself is not revealed)."""
    digest = hashlib.sha256(idempotency_key.encode("utf-8")).hexdigest()[:40]
    return f"<{digest}@{domain}>"


def _classify(exc: Exception) -> DeliveryError:
    if isinstance(exc, smtplib.SMTPAuthenticationError):
        return DeliveryError("smtp_auth", permanent=False)
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        codes = [code for code, _ in exc.recipients.values()]
        code = codes[0] if codes else 550
        return DeliveryError(f"smtp_{code}", permanent=code >= 500)
    if isinstance(exc, smtplib.SMTPResponseException):
        return DeliveryError(f"smtp_{exc.smtp_code}", permanent=exc.smtp_code >= 500)
    if isinstance(exc, smtplib.SMTPNotSupportedError):
        return DeliveryError("smtp_no_starttls", permanent=False)
    if isinstance(exc, smtplib.SMTPServerDisconnected):
        return DeliveryError("smtp_disconnected", permanent=False)
    if isinstance(exc, ssl.SSLError | ssl.CertificateError):
        return DeliveryError("smtp_tls", permanent=False)
    if isinstance(exc, TimeoutError):
        return DeliveryError("smtp_timeout", permanent=False)
    return DeliveryError("smtp_connect", permanent=False)


class SmtpChannel:
    name = "email"
    idempotent = False  # an SMTP server does not drop a second copy; see the module docstring

    def __init__(self, options: SmtpOptions) -> None:
        self._o = options
        _, addr = parseaddr(options.sender)
        if not _ADDRESS.match(addr):
            raise ValueError("the sender is not an email address")
        self._from = addr
        self._domain = addr.rsplit("@", 1)[1]
        self._smtp: smtplib.SMTP | None = None
        self._last_used = 0.0

    def _tls(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=str(self._o.ca_file) if self._o.ca_file else None)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        return ctx

    def _connect(self) -> smtplib.SMTP:
        o = self._o
        smtp: smtplib.SMTP
        if o.security == "tls":
            smtp = smtplib.SMTP_SSL(
                o.host, o.port, timeout=o.timeout_s, context=self._tls(), local_hostname=o.local_hostname
            )
        else:
            smtp = smtplib.SMTP(o.host, o.port, timeout=o.timeout_s, local_hostname=o.local_hostname)
        try:
            if smtp.sock is not None:  # small commands and the lone final dot go out at once (no Nagle delay)
                smtp.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._hello(smtp)
        except BaseException:
            with contextlib.suppress(Exception):
                smtp.close()
            raise
        return smtp

    def _hello(self, smtp: smtplib.SMTP) -> None:
        o = self._o
        smtp.ehlo()
        if o.security == "starttls":
            if not smtp.has_extn("starttls"):
                raise smtplib.SMTPNotSupportedError("STARTTLS not offered")
            smtp.starttls(context=self._tls())
            smtp.ehlo()
        if o.username is not None:
            smtp.login(o.username, o.password or "")

    def _message(self, msg: Outgoing, mid: str) -> bytes:
        m = EmailMessage()
        m["From"] = self._o.sender
        m["To"] = msg.to
        m["Subject"] = msg.subject
        m["Date"] = formatdate(usegmt=True)
        m["Message-ID"] = mid
        m["Auto-Submitted"] = "auto-generated"
        if msg.urgent:
            m["Importance"] = "high"
        m.set_content(msg.text)
        data = _DOT_LINE.sub(b"..", m.as_bytes(policy=SMTP_POLICY))
        return data if data.endswith(b"\r\n") else data + b"\r\n"

    def send(self, msg: Outgoing, commit_point: CommitPoint) -> Receipt:
        if not _ADDRESS.match(msg.to):
            raise DeliveryError("bad_address", permanent=True)
        mid = message_id(msg.idempotency_key, self._domain)
        data = self._message(msg, mid)
        try:
            smtp = self._connection()
            committed = self._transaction(smtp, msg.to, data, commit_point)
            self._last_used = time.monotonic()
        except (smtplib.SMTPException, OSError) as exc:
            self._drop()
            raise _classify(exc) from exc
        if not committed:
            self._drop()  # the server discards the unfinished transaction
            raise DeliveryError("superseded", permanent=False)
        return Receipt(provider_ref=mid)

    def _connection(self) -> smtplib.SMTP:
        """The open connection, or a new one; one idle for a while is probed first (servers close
        idle connections, and a stale one must not cost the notification a retry)."""
        smtp = self._smtp
        if smtp is not None and time.monotonic() - self._last_used >= self._o.probe_after_s:
            try:
                code, _ = smtp.noop()
            except (smtplib.SMTPException, OSError):
                code = 0
            if code != 250:
                self._drop()
                smtp = None
        if smtp is None:
            smtp = self._smtp = self._connect()
        return smtp

    def _transaction(self, smtp: smtplib.SMTP, to: str, data: bytes, commit_point: CommitPoint) -> bool:
        """MAIL, RCPT, DATA, the text, the commit point, the final dot; False: not committed."""
        code, _ = smtp.mail(self._from)
        if code != 250:
            raise smtplib.SMTPSenderRefused(code, b"", self._from)
        code, _ = smtp.rcpt(to)
        if code not in (250, 251):
            raise smtplib.SMTPResponseException(code, b"recipient refused")
        code, _ = smtp.docmd("DATA")
        if code != 354:
            raise smtplib.SMTPDataError(code, b"DATA refused")
        smtp.send(data)
        if not commit_point():
            return False
        smtp.send(b".\r\n")
        code, _ = smtp.getreply()
        if code != 250:
            raise smtplib.SMTPDataError(code, b"message refused")
        return True

    def _drop(self) -> None:
        """Close the connection without QUIT (which, mid-DATA, would be taken as message text)."""
        smtp, self._smtp = self._smtp, None
        if smtp is not None:
            with contextlib.suppress(Exception):
                smtp.close()

    def close(self) -> None:
        smtp, self._smtp = self._smtp, None
        if smtp is not None:
            with contextlib.suppress(Exception):
                smtp.quit()
            with contextlib.suppress(Exception):
                smtp.close()

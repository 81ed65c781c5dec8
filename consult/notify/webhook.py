"""SMS and push through a gateway reached by signed webhooks (one adapter per provider goes behind it).

Each message is one ``POST`` of JSON ``{"v": 1, "id", "channel", "to", "title", "text", "urgent"}``
to the gateway's URL with:

- ``Idempotency-Key``: the notification's idempotency key (the gateway sends a key once, however
  many times it is posted: a resend after an unknown outcome is safe);
- ``X-Vigil-Timestamp``: Unix seconds when signed;
- ``X-Vigil-Signature``: ``v1=`` + hex HMAC-SHA256 of ``"{timestamp}." + body`` under the
  gateway's shared secret. :func:`verify_signature` is the receiving side's check (constant-time,
  with a freshness window against replays).

Answers: 2xx accepted (a JSON body may give ``"id"`` and ``"status": "delivered"``); 408, 425,
429 and 5xx transient (``Retry-After`` honoured); other 4xx permanent; no answer transient.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import ssl
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from consult.notify.channels import CommitPoint, Outgoing, Receipt
from consult.notify.errors import DeliveryError

__all__ = ["SIGNATURE_HEADER", "TIMESTAMP_HEADER", "WebhookChannel", "WebhookOptions", "sign", "verify_signature"]

SIGNATURE_HEADER: Final = "X-Vigil-Signature"
TIMESTAMP_HEADER: Final = "X-Vigil-Timestamp"
_TRANSIENT: Final = frozenset({408, 425, 429})
_MAX_ANSWER: Final = 65_536


def sign(secret: bytes, timestamp: int, body: bytes) -> str:
    return "v1=" + hmac.new(secret, str(timestamp).encode("ascii") + b"." + body, hashlib.sha256).hexdigest()


def verify_signature(
    secret: bytes, timestamp: str | None, signature: str | None, body: bytes, *, now: float, tolerance_s: float = 300
) -> bool:
    """Whether a webhook's signature is valid and its timestamp within ``tolerance_s`` of ``now``."""
    if not timestamp or not signature or not timestamp.isascii() or not timestamp.isdigit() or len(timestamp) > 12:
        return False
    ts = int(timestamp)
    if abs(now - ts) > tolerance_s:
        return False
    return hmac.compare_digest(sign(secret, ts, body), signature)


@dataclass(frozen=True, slots=True, kw_only=True)
class WebhookOptions:
    channel: str  # 'sms' | 'push'
    url: str
    secret: bytes
    timeout_s: float = 10.0
    ca_file: Path | None = None


def _retry_after(value: str | None) -> float | None:
    if value is None or not value.strip().isdigit():
        return None
    return float(value.strip())


class WebhookChannel:
    idempotent = True

    def __init__(self, options: WebhookOptions) -> None:
        if not options.url.startswith(("https://", "http://")):
            raise ValueError("a webhook URL is http(s)")
        if len(options.secret) < 16:
            raise ValueError("a webhook secret has at least 16 bytes")
        self._o = options
        self._ctx = ssl.create_default_context(cafile=str(options.ca_file) if options.ca_file else None)

    @property
    def name(self) -> str:
        return self._o.channel

    def send(self, msg: Outgoing, commit_point: CommitPoint) -> Receipt:
        if not msg.to:
            raise DeliveryError("no_address", permanent=True)
        body = json.dumps(
            {
                "v": 1,
                "id": msg.idempotency_key,
                "channel": self._o.channel,
                "to": msg.to,
                "title": msg.subject,
                "text": msg.text,
                "urgent": msg.urgent,
            },
            separators=(",", ":"),
        ).encode("utf-8")
        ts = int(time.time())
        request = urllib.request.Request(  # noqa: S310 - the scheme is checked in __init__
            self._o.url,
            data=body,
            method="POST",
            headers={
                "Content-Type": "application/json",
                "Idempotency-Key": msg.idempotency_key,
                TIMESTAMP_HEADER: str(ts),
                SIGNATURE_HEADER: sign(self._o.secret, ts, body),
                "User-Agent": "vigil-notify/1",
            },
        )
        if not commit_point():
            raise DeliveryError("superseded", permanent=False)
        try:
            with urllib.request.urlopen(request, timeout=self._o.timeout_s, context=self._ctx) as resp:  # noqa: S310
                answer = resp.read(_MAX_ANSWER)
        except urllib.error.HTTPError as exc:
            exc.close()  # the error is also the response: its connection goes back now
            status = exc.code
            transient = status in _TRANSIENT or status >= 500
            hint = _retry_after(exc.headers.get("Retry-After")) if exc.headers else None
            raise DeliveryError(f"http_{status}", permanent=not transient, retry_after_s=hint) from exc
        except TimeoutError as exc:
            raise DeliveryError("http_timeout", permanent=False) from exc
        except (urllib.error.URLError, OSError) as exc:
            raise DeliveryError("http_connect", permanent=False) from exc
        return _receipt(answer)

    def close(self) -> None:
        return None


def _receipt(answer: bytes) -> Receipt:
    try:
        doc = json.loads(answer) if answer else {}
    except ValueError:
        doc = {}
    if not isinstance(doc, dict):
        doc = {}
    ref = doc.get("id")
    return Receipt(
        provider_ref=ref[:300] if isinstance(ref, str) and ref else None, delivered=doc.get("status") == "delivered"
    )

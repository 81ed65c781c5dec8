"""``vigil edge enroll --url URL --token TOKEN``: fetch the enrollment bundle over HTTPS.

An admin creates a one-time token for a patient on the dashboard; the installer runs one command
on the Pi, no file to copy. The token is ``vgle1.<secret>.<pin>``; the pin is the SHA-256
(base64url) of the public key of the API's TLS certificate. The agent connects, checks the
certificate's public key against the pin (or, with ``--ca-file``, the chain and host name
against that CA), and only then sends the token; the server answers with the bundle once. The
bundle is written to a private temporary file beside the identity, enrolled from, and deleted.

Plain HTTP is refused: the answer holds the agent's broker password.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import http.client
import json
import os
import secrets
import ssl
from pathlib import Path
from typing import Final
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from edge_agent.errors import EnrollmentError

__all__ = ["ENROL_PATH", "fetch_bundle", "token_pin", "write_fetched_bundle"]

ENROL_PATH: Final = "/api/v1/enrol"
_PREFIX: Final = "vgle1"
_MAX_ANSWER: Final = 256 * 1024


def token_pin(token: str) -> str:
    """The pin a token carries ("" when none); :class:`EnrollmentError` when it is not a token."""
    parts = token.split(".")
    if len(parts) != 3 or parts[0] != _PREFIX or not parts[1]:
        raise EnrollmentError("that is not an enrolment token (it starts with vgle1.)", path=None)
    return parts[2]


def _spki_pin(der_cert: bytes) -> str:
    cert = x509.load_der_x509_certificate(der_cert)
    spki = cert.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return base64.urlsafe_b64encode(hashlib.sha256(spki).digest()).rstrip(b"=").decode()


def _connection(url: str, pin: str, ca_file: Path | None, timeout_s: float) -> tuple[http.client.HTTPSConnection, str]:
    parts = urlsplit(url)
    if parts.scheme != "https" or not parts.hostname:
        raise EnrollmentError("the enrolment URL must be https://HOST[:PORT]", path=None)
    if ca_file is not None:
        context = ssl.create_default_context(cafile=str(ca_file))
    elif pin:
        # The pin replaces the chain: the certificate's key must be exactly the pinned one.
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    else:
        raise EnrollmentError("the token carries no server pin: give the API's CA with --ca-file", path=None)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    conn = http.client.HTTPSConnection(parts.hostname, parts.port or 443, timeout=timeout_s, context=context)
    return conn, parts.path.rstrip("/")


def fetch_bundle(url: str, token: str, *, ca_file: Path | None = None, timeout_s: float = 30.0) -> str:
    """The bundle's JSON, from the API at ``url`` in exchange for ``token`` (used up by this)."""
    pin = token_pin(token)
    conn, prefix = _connection(url, pin, ca_file, timeout_s)
    try:
        try:
            conn.connect()
        except (OSError, ssl.SSLError) as exc:
            raise EnrollmentError(f"cannot reach {url}: {type(exc).__name__}", path=None) from exc
        if ca_file is None:
            der = conn.sock.getpeercert(binary_form=True) if conn.sock is not None else None
            if not der or not hmac.compare_digest(_spki_pin(der), pin):
                raise EnrollmentError(
                    "the server's certificate is not the one the token names: not sending it", path=None
                )
        body = json.dumps({"token": token})
        conn.request("POST", prefix + ENROL_PATH, body=body, headers={"Content-Type": "application/json"})
        answer = conn.getresponse()
        data = answer.read(_MAX_ANSWER + 1)
    except (OSError, http.client.HTTPException) as exc:
        raise EnrollmentError(f"enrolment over {url} failed: {type(exc).__name__}", path=None) from exc
    finally:
        conn.close()
    if answer.status != 200:
        raise EnrollmentError(f"the server refused the token (HTTP {answer.status}): ask for a new one", path=None)
    if len(data) > _MAX_ANSWER:
        raise EnrollmentError("the server's answer is too large", path=None)
    try:
        doc = json.loads(data)
        return json.dumps(doc["bundle"])
    except (ValueError, KeyError, TypeError) as exc:
        raise EnrollmentError("the server's answer holds no bundle", path=None) from exc


def write_fetched_bundle(directory: Path, bundle_json: str) -> Path:
    """The fetched bundle in a new file only this user can read, in ``directory`` (made 0700)."""
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = directory / f".bundle-{secrets.token_hex(8)}.json"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(bundle_json)
    return path

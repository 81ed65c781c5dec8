"""TOTP second factor (RFC 6238, 30 s steps, 6 digits, SHA-1 as authenticator apps expect).

A code is accepted for the current step and one step either side (clock drift), and never twice:
the caller records the matched step and refuses any step at or below the last one used.
"""

from __future__ import annotations

import hmac
import io
from datetime import datetime

import pyotp
import segno

__all__ = ["ISSUER", "matching_step", "new_secret", "provisioning_uri", "qr_svg"]

ISSUER = "Vigil"
_STEP_S = 30


def new_secret() -> str:
    return pyotp.random_base32()


def provisioning_uri(secret: str, account: str) -> str:
    return pyotp.TOTP(secret).provisioning_uri(name=account, issuer_name=ISSUER)


def qr_svg(uri: str) -> str:
    """The otpauth URI as an SVG QR code (no script, no external reference)."""
    out = io.BytesIO()
    segno.make(uri, error="m").save(out, kind="svg", scale=5, border=2, xmldecl=False, svgns=True)
    return out.getvalue().decode("utf-8")


def matching_step(secret: str, code: str, now: datetime) -> int | None:
    """The time step whose code ``code`` is (now, or one step before or after), or None."""
    code = code.strip().replace(" ", "")
    if len(code) != 6 or not code.isdigit():
        return None
    totp = pyotp.TOTP(secret)
    step = int(now.timestamp()) // _STEP_S
    for candidate in (step, step - 1, step + 1):
        if hmac.compare_digest(totp.generate_otp(candidate), code):
            return candidate
    return None

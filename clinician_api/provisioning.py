"""What the fleet routes need from provisioning, as a Protocol the composition root fills in.

Provisioning (creating an agent with its broker account and enrollment bundle, revoking one) is
the ``provisioning`` package's; the settings it needs (key and broker directories) are the
composition root's, so ``vigil api`` loads an implementation from the ``vigil.provisioner`` entry
point (pyproject.toml names ``vigil_cli.api_provisioner:provisioner``) and tests pass one to
``create_app``. Without one, the routes that need it answer 503. Its errors
(``provisioning.errors``) become problem responses in :mod:`clinician_api.problems`.

Enrolment tokens (``vigil edge enroll --url URL --token TOKEN``) are ``vgle1.<secret>.<pin>``: the
256-bit secret (only its SHA-256 is stored) and, when the API knows it, the SHA-256 of the public
key of the TLS certificate the Pi will see (base64url, as ``curl --pinnedpubkey`` uses). With the
pin the Pi verifies the server without a CA file, from one command line.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from importlib.metadata import entry_points
from pathlib import Path
from typing import Final, Protocol

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from clinician_api.errors import ServiceUnavailable

__all__ = [
    "ENTRY_POINT_GROUP",
    "TOKEN_PREFIX",
    "ProvisionedAgent",
    "Provisioner",
    "format_token",
    "load_provisioner",
    "parse_token",
    "require",
    "spki_pin",
]

ENTRY_POINT_GROUP: Final = "vigil.provisioner"
TOKEN_PREFIX: Final = "vgle1"  # noqa: S105 - a format marker, not a secret


@dataclass(frozen=True, slots=True)
class ProvisionedAgent:
    agent_id: str
    bundle_json: str  # the EnrollmentBundle (it holds the broker password: never log or store it)


class Provisioner(Protocol):
    def create_agent(self, *, org_id: str, patient_id: str) -> ProvisionedAgent:
        """Create a pending agent assigned to the patient, with its broker account; its bundle."""
        ...

    def revoke_agent(self, agent_id: str, *, org_id: str) -> str:
        """Remove the agent's broker access and make ingest refuse its keys; a note for the log.

        ``org_id`` is the caller's organisation: an agent of another one is provisioning's
        ``NotFound`` (the route has checked it already; this holds if a route ever forgets)."""
        ...


def load_provisioner(config_file: Path | None) -> Provisioner | None:
    """The implementation registered under :data:`ENTRY_POINT_GROUP` (``default``), or None."""
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name == "default":
            factory = ep.load()
            provisioner: Provisioner = factory(config_file)
            return provisioner
    return None


def require(provisioner: Provisioner | None) -> Provisioner:
    if provisioner is None:
        raise ServiceUnavailable("provisioning is not configured for this API process", retry_after_s=3600)
    return provisioner


def spki_pin(cert_pem: bytes) -> str:
    """base64url(SHA-256(SubjectPublicKeyInfo)) of the first certificate in ``cert_pem``."""
    cert = x509.load_pem_x509_certificate(cert_pem)
    spki = cert.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return base64.urlsafe_b64encode(hashlib.sha256(spki).digest()).rstrip(b"=").decode()


def format_token(secret: str, pin: str) -> str:
    return f"{TOKEN_PREFIX}.{secret}.{pin}"


def parse_token(token: str) -> str | None:
    """The secret of a token (the pin is the Pi's business), or None when it is not one."""
    parts = token.split(".")
    if len(parts) != 3 or parts[0] != TOKEN_PREFIX or not 20 <= len(parts[1]) <= 100:
        return None
    return parts[1]

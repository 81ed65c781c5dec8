"""Server key generations and the Vigil CA, in ``key_dir`` (wrapping :mod:`rpm_core.keystore`).

The highest generation is current: new enrollment bundles name it first and ingest signs receipts
with it; every generation on disk is accepted when opening envelopes, until retired. The CA signs
the broker's TLS certificate and goes into every bundle; it is created on first use.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from broker_config.ca import CertifiedKey, load_or_create_ca
from provisioning.errors import ServerKeyError, translating
from provisioning.settings import ProvisioningSettings
from rpm_core.keystore import ServerKeyring, create_server_key, load_server_keys, retire_server_keys

__all__ = ["KeyGeneration", "ca_of", "init_keys", "keyring", "list_keys", "retire_keys", "rotate_keys"]


@dataclass(frozen=True, slots=True)
class KeyGeneration:
    generation: int
    kid: str
    current: bool


def keyring(settings: ProvisioningSettings) -> ServerKeyring:
    """Every server key generation on disk (:class:`ServerKeyError` when there is none yet)."""
    with translating():
        return load_server_keys(settings.key_dir)


def ca_of(settings: ProvisioningSettings, *, now: datetime) -> CertifiedKey:
    """The Vigil CA in ``key_dir``, created at ``now`` when there is none."""
    with translating():
        return load_or_create_ca(settings.key_dir, now=now)


def init_keys(settings: ProvisioningSettings, *, now: datetime) -> int | None:
    """The first server key generation and the CA, unless they exist: the new generation, or None."""
    try:
        keyring(settings)
        created = None
    except ServerKeyError:
        with translating():
            created = create_server_key(settings.key_dir)
    ca_of(settings, now=now)
    return created


def rotate_keys(settings: ProvisioningSettings) -> int:
    """A new current generation (older ones stay accepted until retired): its number."""
    with translating():
        return create_server_key(settings.key_dir)


def retire_keys(settings: ProvisioningSettings, *, keep: int) -> list[int]:
    """Delete all but the newest ``keep`` generations: those deleted (ingest must restart afterwards)."""
    with translating():
        return retire_server_keys(settings.key_dir, keep=keep)


def list_keys(settings: ProvisioningSettings) -> list[KeyGeneration]:
    ring = keyring(settings)
    return [KeyGeneration(gen, key.kid, key is ring.current) for gen, key in ring.generations]

"""The Vigil certificate authority: it signs the broker's TLS server certificate.

Agents and the ingest service trust exactly this CA (its certificate travels in the enrollment
bundle) and check the broker's host name against the server certificate's subjectAltName. Agents
authenticate with a username and password over that TLS connection (their keys are generated on
the Pi, see ``rpm_core.enrollment``), so no client certificate is issued here.

Keys are ECDSA P-256 (every TLS 1.2 and 1.3 stack speaks it). The CA key lives in the server key
directory (``{key_dir}/ca/ca.key``, mode 0600) beside ``ca.pem``; both directories are kept 0700
(created so, or tightened with a warning when found looser). ``now`` is a parameter so tests can
issue certificates that are already expired or not yet valid.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Final

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives import serialization as ser
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from broker_config.errors import CertificateError
from rpm_core.keystore import ensure_private_dir, write_private

__all__ = ["CertifiedKey", "create_ca", "issue_server_certificate", "load_ca", "load_or_create_ca"]

CA_DIR: Final = "ca"


@dataclass(frozen=True, slots=True)
class CertifiedKey:
    key: ec.EllipticCurvePrivateKey
    cert: x509.Certificate

    def cert_pem(self) -> bytes:
        return self.cert.public_bytes(ser.Encoding.PEM)

    def key_pem(self) -> bytes:
        return self.key.private_bytes(ser.Encoding.PEM, ser.PrivateFormat.PKCS8, ser.NoEncryption())

    def write(self, cert_path: Path, key_path: Path) -> None:
        cert_path.parent.mkdir(parents=True, exist_ok=True)
        cert_path.write_bytes(self.cert_pem())
        write_private(key_path, self.key_pem())


def _name(cn: str) -> x509.Name:
    return x509.Name(
        [x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Vigil"), x509.NameAttribute(NameOID.COMMON_NAME, cn)]
    )


def create_ca(*, now: datetime, common_name: str = "Vigil CA", valid: timedelta = timedelta(days=3650)) -> CertifiedKey:
    key = ec.generate_private_key(ec.SECP256R1())
    name = _name(common_name)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + valid)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return CertifiedKey(key, cert)


def _san(hostnames: Sequence[str]) -> x509.SubjectAlternativeName:
    names: list[x509.GeneralName] = []
    for host in hostnames:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    return x509.SubjectAlternativeName(names)


def issue_server_certificate(
    ca: CertifiedKey,
    hostnames: Sequence[str],
    *,
    now: datetime,
    valid: timedelta = timedelta(days=397),
    not_before: datetime | None = None,
) -> CertifiedKey:
    """A TLS server certificate for the broker, valid for ``hostnames`` (DNS names or IP addresses)."""
    if not hostnames:
        raise CertificateError("a server certificate needs at least one host name")
    key = ec.generate_private_key(ec.SECP256R1())
    start = now - timedelta(minutes=5) if not_before is None else not_before
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(hostnames[0]))
        .issuer_name(ca.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + valid)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(_san(hostnames), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()),
            critical=False,
        )
        .sign(ca.key, hashes.SHA256())
    )
    return CertifiedKey(key, cert)


def load_ca(key_dir: Path) -> CertifiedKey:
    try:
        key = ser.load_pem_private_key((key_dir / CA_DIR / "ca.key").read_bytes(), password=None)
        cert = x509.load_pem_x509_certificate((key_dir / CA_DIR / "ca.pem").read_bytes())
    except OSError as exc:
        raise CertificateError(f"cannot read the CA in {key_dir / CA_DIR}: {exc.strerror}") from exc
    except ValueError as exc:
        raise CertificateError(f"the CA in {key_dir / CA_DIR} is not a PEM key and certificate") from exc
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise CertificateError("the CA key is not an EC key")
    return CertifiedKey(key, cert)


def load_or_create_ca(key_dir: Path, *, now: datetime) -> CertifiedKey:
    ensure_private_dir(key_dir)
    ensure_private_dir(key_dir / CA_DIR)
    if (key_dir / CA_DIR / "ca.key").exists():
        return load_ca(key_dir)
    ca = create_ca(now=now)
    ca.write(key_dir / CA_DIR / "ca.pem", key_dir / CA_DIR / "ca.key")
    return ca

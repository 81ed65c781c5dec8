"""Exceptions of the broker configuration package.

::

    VigilError
    └── BrokerConfigError            .reason
        ├── CertificateError         the CA or a certificate cannot be created, read or used
        └── ReloadFailed             the running broker could not be told to reload (.pid_file)

Foreign errors (``OSError``, ``ValueError`` from cryptography) are translated here, chained with
``from``.
"""

from __future__ import annotations

from pathlib import Path

from rpm_core.errors import VigilError

__all__ = ["BrokerConfigError", "CertificateError", "ReloadFailed"]


class BrokerConfigError(VigilError):
    reason = "broker_config"


class CertificateError(BrokerConfigError):
    reason = "certificate"


class ReloadFailed(BrokerConfigError):
    reason = "reload_failed"

    def __init__(self, pid_file: Path, why: str) -> None:
        super().__init__(f"cannot signal the broker (pid file {pid_file}): {why}")
        self.pid_file = pid_file
        self.why = why

"""Exceptions of the broker configuration package.

::

    VigilError
    └── BrokerConfigError            .reason
        ├── CertificateError         the CA or a certificate cannot be created, read or used
        ├── AccountError             a broker account that must not exist          .username .why
        │   └── ReservedName         an agent id in the service accounts' namespace (``vigil-``)
        ├── LayoutError              the broker user cannot run from the rendered tree  .path .user
        └── ControlError             the running broker's control API failed      .command .error
            └── ControlUnavailable   the control API cannot be reached at all       .why

Foreign errors (``OSError``, ``ValueError`` from cryptography, paho's socket and TLS errors) are
translated here, chained with ``from``. Messages name usernames, paths and commands, never a
password.
"""

from __future__ import annotations

from pathlib import Path

from rpm_core.errors import VigilError

__all__ = [
    "AccountError",
    "BrokerConfigError",
    "CertificateError",
    "ControlError",
    "ControlUnavailable",
    "LayoutError",
    "ReservedName",
]


class BrokerConfigError(VigilError):
    reason = "broker_config"


class CertificateError(BrokerConfigError):
    reason = "certificate"


class AccountError(BrokerConfigError):
    reason = "broker_account"

    def __init__(self, username: str, why: str) -> None:
        super().__init__(f"broker account {username[:70]!r}: {why}")
        self.username = username
        self.why = why


class ReservedName(AccountError):
    reason = "reserved_name"


class LayoutError(BrokerConfigError):
    """Mosquitto, after dropping to ``user``, could not reach or use ``path``."""

    reason = "broker_layout"

    def __init__(self, path: Path, user: str, why: str) -> None:
        super().__init__(f"{path}: {why} (the broker runs as {user!r})")
        self.path = path
        self.user = user
        self.why = why


class ControlError(BrokerConfigError):
    """The dynamic security plugin answered a command with an error (or not at all)."""

    reason = "broker_control"

    def __init__(self, command: str, error: str) -> None:
        super().__init__(f"the broker refused {command}: {error}")
        self.command = command
        self.error = error


class ControlUnavailable(ControlError):
    reason = "broker_control_unavailable"

    def __init__(self, why: str) -> None:
        super().__init__("the control connection", why)
        self.why = why

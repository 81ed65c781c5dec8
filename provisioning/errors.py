"""Exceptions of provisioning: the only ones its public functions raise.

::

    VigilError
    └── ProvisioningError               .reason
        ├── InvalidRequest              .field .why  refused before anything was written: an id that is
        │                                            not valid, a name reserved for service accounts
        ├── NotFound                    .kind .key   no such organisation, patient or agent
        ├── Conflict                    .kind .key .why  it exists already, or is in the wrong state
        ├── ServerKeyError              the server key directory: no generation yet, unreadable, keep < 1
        ├── FileAccessError             .path        a file under key_dir or broker_dir that cannot be
        │                                            read or written (.strerror)
        ├── DatabaseError               .cause       the database refused the change or failed
        │   └── DatabaseUnavailable     .sqlstate    it cannot be reached or cannot take writes now
        └── BrokerError                 .cause       the broker configuration could not be rendered, or
            │                                        the running broker refused or missed a change
            └── BrokerOutOfSync                      the broker and the database disagree (what to do is
                                                     in the message)

Foreign errors are translated at this package's boundary by :func:`translating` (every public
function runs inside it), chained with ``from``: ``store``'s (``NotFound``, ``Conflict``,
``DatabaseUnavailable``, the rest as ``DatabaseError``), ``broker_config``'s (as ``BrokerError``),
``rpm_core``'s (an ``InvalidIdentifier`` as ``InvalidRequest``, a key-store ``ConfigError`` as
``ServerKeyError``) and ``OSError`` (``FileAccessError``). ``.cause`` is the foreign error's
``reason`` code. Messages are the foreign messages unchanged (they name ids, usernames, paths and
commands, never a password or a patient's name), so an operator reads what went wrong and what to
do; callers branch on the class and fields. ``InvalidRequest`` is a usage error (the CLI exits 2);
the others are failures (exit 1); the clinician API maps them to 400/404/409/503/502.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from broker_config.errors import BrokerConfigError
from rpm_core.errors import ConfigError, ContractError, InvalidIdentifier, VigilError
from store import errors as store_errors

__all__ = [
    "BrokerError",
    "BrokerOutOfSync",
    "Conflict",
    "DatabaseError",
    "DatabaseUnavailable",
    "FileAccessError",
    "InvalidRequest",
    "NotFound",
    "ProvisioningError",
    "ServerKeyError",
    "translating",
]


class ProvisioningError(VigilError):
    reason = "provisioning"


class InvalidRequest(ProvisioningError):
    reason = "invalid_request"

    def __init__(self, field: str, why: str, message: str | None = None) -> None:
        super().__init__(message or f"{field}: {why}")
        self.field = field
        self.why = why


class NotFound(ProvisioningError):
    reason = "not_found"

    def __init__(self, kind: str, key: str) -> None:
        super().__init__(f"no {kind} {key!r}")
        self.kind = kind
        self.key = key


class Conflict(ProvisioningError):
    reason = "conflict"

    def __init__(self, kind: str, key: str, why: str) -> None:
        super().__init__(f"{kind} {key!r}: {why}")
        self.kind = kind
        self.key = key
        self.why = why


class ServerKeyError(ProvisioningError):
    reason = "server_keys"


class FileAccessError(ProvisioningError):
    reason = "file_access"

    def __init__(self, path: Path | None, strerror: str) -> None:
        super().__init__(f"{path if path is not None else 'a file'}: {strerror}")
        self.path = path
        self.strerror = strerror


class DatabaseError(ProvisioningError):
    reason = "database"

    def __init__(self, message: str, *, cause: str) -> None:
        super().__init__(message)
        self.cause = cause


class DatabaseUnavailable(DatabaseError):
    reason = "database_unavailable"

    def __init__(self, message: str, *, sqlstate: str | None) -> None:
        super().__init__(message, cause="database_unavailable")
        self.sqlstate = sqlstate  # None: no server answer


class BrokerError(ProvisioningError):
    reason = "broker"

    def __init__(self, message: str, *, cause: str = "broker") -> None:
        super().__init__(message)
        self.cause = cause


class BrokerOutOfSync(BrokerError):
    """The broker could not be brought in line with the database (what to do is in the message)."""

    reason = "broker_out_of_sync"

    def __init__(self, message: str) -> None:
        super().__init__(message, cause="broker_out_of_sync")


def translate(exc: BaseException) -> ProvisioningError | None:
    """The provisioning error a foreign error stands for (the module docstring; another ``VigilError``
    becomes a plain :class:`ProvisioningError`), or None for anything else (a bug: left as it is)."""
    if isinstance(exc, ProvisioningError):
        return exc
    if isinstance(exc, store_errors.NotFound):
        return NotFound(exc.kind, exc.key)
    if isinstance(exc, store_errors.Conflict):
        return Conflict(exc.kind, exc.key, exc.why)
    if isinstance(exc, store_errors.DatabaseUnavailable):
        return DatabaseUnavailable(str(exc), sqlstate=exc.sqlstate)
    if isinstance(exc, store_errors.StoreError):
        return DatabaseError(str(exc), cause=exc.reason)
    if isinstance(exc, BrokerConfigError):
        return BrokerError(str(exc), cause=exc.reason)
    if isinstance(exc, InvalidIdentifier):
        field = "org_id" if exc.kind == "organisation" else f"{exc.kind}_id"
        return InvalidRequest(field, "not a valid identifier", str(exc))
    if isinstance(exc, ConfigError):
        return ServerKeyError(str(exc))
    if isinstance(exc, ContractError):
        return InvalidRequest("request", exc.reason, str(exc))
    if isinstance(exc, OSError):
        name = exc.filename
        return FileAccessError(Path(name) if isinstance(name, str) else None, exc.strerror or type(exc).__name__)
    if isinstance(exc, VigilError):
        return ProvisioningError(str(exc))
    return None


@contextmanager
def translating() -> Iterator[None]:
    """Run a public function's body: foreign errors leave as :class:`ProvisioningError` (see :func:`translate`)."""
    try:
        yield
    except ProvisioningError:
        raise
    except (VigilError, OSError) as exc:
        translated = translate(exc)
        if translated is None:
            raise
        raise translated from exc

"""Settings of the delivery worker (``vigil notify``): environment ``VIGIL_*`` over the TOML file.

The worker signs acknowledgement links with the API's secret key: ``api_secret_key``, or the one
``vigil api`` keeps in ``key_dir/api-secret.key`` (:func:`api_secret` reads it, and creates it
when neither exists yet, without ever replacing one another process wrote first).
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Annotated, Final, Literal

from pydantic import Field, SecretStr

from rpm_core.errors import ConfigError
from rpm_core.settings import VigilSettings
from store.config import DEFAULT_DATABASE_URL

__all__ = ["SECRET_FILE", "NotifySettings", "api_secret"]

SECRET_FILE: Final = "api-secret.key"  # noqa: S105 - a file name (the same as clinician_api.cli's)


class NotifySettings(VigilSettings):
    # PostgreSQL URL of the Vigil database (the notification outbox).
    database_url: str = DEFAULT_DATABASE_URL
    # Server keys directory: where `vigil api` keeps its secret key (api-secret.key) unless api_secret_key is set.
    key_dir: Path = Path(".vigil/keys")
    # The API's secret key (shared with `vigil api`): acknowledgement links are signed with a key derived from it.
    api_secret_key: SecretStr | None = None
    # The URL users reach Vigil at: every link in a notification starts with it.
    api_public_url: str = "http://localhost:8000"
    # SMTP server for email; empty: email notifications wait in the outbox until a worker has one.
    notify_smtp_host: str = ""
    # SMTP port (587 for STARTTLS submission, 465 for implicit TLS).
    notify_smtp_port: Annotated[int, Field(ge=1, lt=65536)] = 587
    # "starttls" (required: a server that does not offer it is not sent to), "tls" (implicit), "none" (a local relay).
    notify_smtp_security: Literal["starttls", "tls", "none"] = "starttls"
    # SMTP user name (empty: no authentication).
    notify_smtp_username: str = ""
    # SMTP password.
    notify_smtp_password: SecretStr | None = None
    # The From of every email; its domain names the Message-IDs.
    notify_smtp_from: str = "Vigil <vigil@localhost>"
    # CA certificate (PEM) the SMTP server's certificate must chain to; empty: the system's CAs.
    notify_smtp_ca_file: Path | None = None
    # Seconds an SMTP connection or reply may take.
    notify_smtp_timeout_s: Annotated[float, Field(gt=0, le=300)] = 30.0
    # The SMS gateway's webhook URL; empty: SMS notifications wait.
    notify_sms_webhook_url: str = ""
    # Shared secret (at least 16 characters) that signs the SMS webhooks.
    notify_sms_webhook_secret: SecretStr | None = None
    # The push gateway's webhook URL; empty: push notifications wait.
    notify_push_webhook_url: str = ""
    # Shared secret (at least 16 characters) that signs the push webhooks.
    notify_push_webhook_secret: SecretStr | None = None
    # Seconds a gateway may take to answer.
    notify_webhook_timeout_s: Annotated[float, Field(gt=0, le=300)] = 10.0
    # Channels whose notifications may carry the care team's message text (the rest carry a link only).
    notify_text_channels: tuple[Literal["email", "sms", "push", "in_app"], ...] = ("in_app",)
    # Notifications a worker claims per transaction.
    notify_batch: Annotated[int, Field(ge=1, le=1000)] = 20
    # Seconds between polls when no NOTIFY arrives (queued notifications wake the worker at once).
    notify_poll_interval_s: Annotated[float, Field(gt=0, le=3600)] = 5.0
    # Attempts before a notification that keeps failing transiently ends as failed.
    notify_max_attempts: Annotated[int, Field(ge=1, le=100)] = 8
    # First retry delay in seconds; each later one is notify_backoff_factor times longer.
    notify_backoff_base_s: Annotated[float, Field(gt=0, le=86_400)] = 30.0
    # Growth of the retry delay per attempt.
    notify_backoff_factor: Annotated[float, Field(ge=1, le=10)] = 2.0
    # Longest retry delay in seconds.
    notify_backoff_cap_s: Annotated[float, Field(gt=0, le=86_400)] = 3600.0
    # Random fraction (0 to this) taken off each retry delay, so many retries do not align.
    notify_backoff_jitter: Annotated[float, Field(ge=0, lt=1)] = 0.2
    # Seconds an attempt owns its notification before another worker may take it back (a hung worker).
    notify_lease_s: Annotated[float, Field(ge=10, le=86_400)] = 600.0
    # A send whose worker died after the commit point (the SMTP dot): "resend" it with the same Message-ID
    # (at least once) or mark it "fail"ed as outcome_unknown (at most once). Gateways dedupe: always resent.
    notify_unknown_outcome: Literal["resend", "fail"] = "resend"
    # Acknowledgement links work for this many seconds after the notification's first attempt.
    notify_ack_link_ttl_s: Annotated[int, Field(ge=60, le=7 * 86_400)] = 86_400


def api_secret(settings: NotifySettings) -> str:
    """The API's secret key: configured, or kept in ``key_dir`` (created once, never replaced)."""
    if settings.api_secret_key is not None:
        return settings.api_secret_key.get_secret_value()
    path = settings.key_dir / SECRET_FILE
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = path.with_name(f"{SECRET_FILE}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, secrets.token_urlsafe(48).encode("ascii"))
            os.fsync(fd)
        finally:
            os.close(fd)
        try:
            os.link(tmp, path)  # fails if another process created it first: theirs wins
        except FileExistsError:
            pass
        finally:
            tmp.unlink(missing_ok=True)
    secret = path.read_text(encoding="utf-8").strip()
    if len(secret) < 32:
        raise ConfigError(f"{path} holds no usable secret key")
    return secret

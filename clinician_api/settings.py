"""Settings of the clinician API (``vigil api``): environment ``VIGIL_*`` over the TOML file.

Built once by the CLI (or a test) and passed to :func:`clinician_api.app.create_app`. The secret
key signs cursors and CSRF tokens and seals TOTP secrets; ``vigil api`` creates one in
``key_dir`` when none is configured, and every instance behind one load balancer must share it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import Field, SecretStr, field_validator

from alerts.config import RulesConfig
from rpm_core.settings import VigilSettings
from store.config import DEFAULT_DATABASE_URL

__all__ = ["ApiSettings"]


class ApiSettings(VigilSettings):
    # PostgreSQL URL of the Vigil database.
    database_url: str = DEFAULT_DATABASE_URL
    # Server keys directory; `vigil api` keeps its secret key there (api-secret.key) unless api_secret_key is set.
    key_dir: Path = Path(".vigil/keys")
    # Address `vigil api` listens on (`--host`).
    api_host: str = "127.0.0.1"
    # Port `vigil api` listens on (`--port`; 0 picks a free one).
    api_port: Annotated[int, Field(ge=0, lt=65536)] = 8000
    # Worker processes of `vigil api` (`--workers`); each has its own pool and alert listener.
    api_workers: Annotated[int, Field(ge=1, le=64)] = 1
    # Secret (at least 32 characters) that signs cursors and CSRF tokens and seals TOTP secrets; shared by
    # every instance. Changing it signs everyone out of their second factor: TOTP must be enrolled again.
    api_secret_key: SecretStr | None = None
    # The URL users reach the API at (used in emailed links such as the password reset).
    api_public_url: str = "http://localhost:8000"
    # Database role every pooled connection SETs ROLE to (migration 0020 creates vigil_app without UPDATE or
    # DELETE on the audit log); empty: stay the login role.
    api_db_role: str = "vigil_app"
    # Database connections each worker process keeps open.
    api_pool_min: Annotated[int, Field(ge=0, le=100)] = 2
    # Most database connections per worker process (requests beyond it wait for one).
    api_pool_max: Annotated[int, Field(ge=1, le=200)] = 16
    # Automatic logoff (HIPAA 164.312(a)(2)(iii)): a session unused for this long is over.
    api_session_idle_s: Annotated[int, Field(ge=60, le=86_400)] = 900
    # A session ends this long after sign-in whatever the activity.
    api_session_absolute_s: Annotated[int, Field(ge=300, le=30 * 86_400)] = 43_200
    # A session's last-seen time is written at most this often (each write costs a row update).
    api_session_touch_s: Annotated[int, Field(ge=0, le=600)] = 30
    # Mark cookies Secure (sent over HTTPS only). Turn off only for a local demo or tests over plain HTTP.
    api_cookie_secure: bool = True
    # The API is reached over HTTPS (directly or through a TLS-terminating proxy): send HSTS.
    api_tls: bool = False
    # HSTS max-age in seconds when api_tls is on.
    api_hsts_max_age_s: Annotated[int, Field(ge=0)] = 31_536_000
    # Origins allowed by CORS; empty (the default) sends no CORS headers at all.
    api_cors_origins: tuple[str, ...] = ()
    # Proxies whose X-Forwarded-For / X-Forwarded-Proto uvicorn trusts (the client address audited and throttled).
    api_forwarded_allow_ips: tuple[str, ...] = ()
    # Failed sign-ins (or second-factor codes) from one address for one account before that pair is locked.
    api_login_max_failures: Annotated[int, Field(ge=1, le=100)] = 5
    # Failed sign-ins for one account from any address before the account is locked (distributed guessing).
    api_login_account_max_failures: Annotated[int, Field(ge=1, le=10_000)] = 50
    # Failed sign-ins from one address over all accounts before the address is locked (password spraying).
    api_login_address_max_failures: Annotated[int, Field(ge=1, le=10_000)] = 30
    # Window over which sign-in failures (and reset requests) are counted.
    api_login_window_s: Annotated[int, Field(ge=10, le=86_400)] = 900
    # How long a lockout lasts; failures while locked are refused unchecked and do not extend it.
    api_login_lockout_s: Annotated[int, Field(ge=10, le=86_400)] = 900
    # argon2id passes over memory (RFC 9106's second recommended option: 3 passes, 64 MiB, 4 lanes).
    api_argon2_time_cost: Annotated[int, Field(ge=1, le=20)] = 3
    # argon2id memory per password hash, in KiB.
    api_argon2_memory_kib: Annotated[int, Field(ge=1024, le=4_194_304)] = 65_536
    # argon2id lanes.
    api_argon2_parallelism: Annotated[int, Field(ge=1, le=16)] = 4
    # Password hashes computed at once per process (each takes api_argon2_memory_kib): bounds memory under a flood.
    api_hash_concurrency: Annotated[int, Field(ge=1, le=64)] = 2
    # A password reset link works once, for this long.
    api_reset_ttl_s: Annotated[int, Field(ge=60, le=86_400)] = 3600
    # Reset emails one account may be sent per api_login_window_s.
    api_reset_max_per_account: Annotated[int, Field(ge=1, le=100)] = 3
    # Longest break-glass access a clinician may ask for, in minutes.
    api_break_glass_max_min: Annotated[int, Field(ge=5, le=1440)] = 60
    # Longest lifetime of an integration's bearer token, in days.
    api_token_max_days: Annotated[int, Field(ge=1, le=3650)] = 365
    # Seconds between rounds of the audit sealer (new audit rows join the hash chain); a row is
    # tamper-evident from then on.
    api_audit_seal_interval_s: Annotated[float, Field(gt=0, le=3600)] = 1.0
    # Largest page a list returns.
    api_page_max: Annotated[int, Field(ge=10, le=1000)] = 200
    # Most raw points a chart returns; a longer range asks for hourly or daily resolution.
    api_chart_max_points: Annotated[int, Field(ge=100, le=1_000_000)] = 20_000
    # A live stream is closed after this many seconds (the browser reconnects and is authenticated again).
    api_stream_max_s: Annotated[int, Field(ge=10, le=86_400)] = 300
    # Seconds between keep-alive comments on an idle live stream.
    api_stream_ping_s: Annotated[float, Field(gt=0, le=300)] = 15.0
    # Largest file that can be attached to a secure message (JPEG, PNG or PDF; stored encrypted). The
    # database refuses more than 10 MiB whatever this says.
    api_attachment_max_bytes: Annotated[int, Field(ge=1024, le=10 * 1024 * 1024)] = 5 * 1024 * 1024

    # The organisation's alert rule defaults (the TOML table [alerts_rules] the alert engine reads too):
    # the patient page shows a patient's thresholds resolved against them.
    alerts_rules: RulesConfig = RulesConfig()
    # Minutes an enrolment token (`vigil edge enroll --url --token`) stays valid when the admin does not say.
    api_enrol_token_ttl_min: Annotated[int, Field(ge=5, le=7 * 24 * 60)] = 24 * 60
    # The URL a Pi reaches the API at for `vigil edge enroll --url` (HTTPS); empty: api_public_url.
    api_enrol_url: str = ""
    # The API's TLS certificate and key (PEM): `vigil api` then serves HTTPS itself, and enrolment
    # tokens carry the certificate's public-key pin so a Pi needs no CA file.
    api_tls_cert_file: Path | None = None
    # The private key of api_tls_cert_file.
    api_tls_key_file: Path | None = None
    # The SHA-256 pin (base64) of the public key Pis see when the TLS certificate is served by a proxy in front
    # of the API; empty: computed from api_tls_cert_file.
    api_enrol_pin: str = ""

    @field_validator("api_secret_key")
    @classmethod
    def _strong_secret(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            raw = value.get_secret_value()
            if len(raw) < 32 or raw.lower() in {"changeme" * 4, "secret" * 6}:
                raise ValueError("api_secret_key needs at least 32 random characters")
        return value

"""``vigil api``: serve the clinician API with uvicorn.

Settings are built once here (``ApiSettings``: flags over ``VIGIL_*`` over the TOML file). Without
``api_secret_key`` the command keeps one in ``<key_dir>/api-secret.key`` (mode 0600), created on
first start: several instances behind one load balancer must share it. With ``--workers N`` each
uvicorn worker process builds the app from the same validated settings, handed over privately in
its environment.
"""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path
from typing import Annotated, Any, Final

import typer
from fastapi import FastAPI
from pydantic import SecretStr

from clinician_api.app import create_app
from clinician_api.provisioning import load_provisioner
from clinician_api.settings import ApiSettings
from rpm_core.errors import VigilError
from rpm_core.keystore import write_private
from rpm_core.settings import load_settings

__all__ = ["SECRET_FILE", "app", "ensure_secret", "worker_app"]

SECRET_FILE: Final = "api-secret.key"  # noqa: S105 - a file name, not a secret
_HANDOFF: Final = "_VIGIL_API_SETTINGS_JSON"

app = typer.Typer(add_completion=False, invoke_without_command=True, help="The clinician API and dashboard.")

ConfigOpt = Annotated[Path | None, typer.Option("--config", help="TOML settings file (or VIGIL_CONFIG).")]
UrlOpt = Annotated[str | None, typer.Option("--database-url", help="PostgreSQL URL (or VIGIL_DATABASE_URL).")]


def ensure_secret(settings: ApiSettings) -> ApiSettings:
    """``settings`` with a secret key: the configured one, else the one kept in key_dir (made once)."""
    if settings.api_secret_key is not None:
        return settings
    path = settings.key_dir / SECRET_FILE
    if path.is_file():
        secret = path.read_text(encoding="utf-8").strip()
    else:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        secret = secrets.token_urlsafe(48)
        write_private(path, secret.encode("utf-8"))
    return settings.model_copy(update={"api_secret_key": SecretStr(secret)})


def worker_app() -> FastAPI:
    """The app of one uvicorn worker process (``--workers`` > 1)."""
    raw = os.environ.get(_HANDOFF)
    if raw is None:
        raise VigilError("worker_app is started by `vigil api --workers N`")
    data = json.loads(raw)
    config = data.pop("_config_file", None)
    return create_app(ApiSettings.model_validate(data), provisioner=load_provisioner(Path(config) if config else None))


@app.callback()
def serve(
    ctx: typer.Context,
    config: ConfigOpt = None,
    database_url: UrlOpt = None,
    host: Annotated[str | None, typer.Option(help="Address to listen on (or VIGIL_API_HOST).")] = None,
    port: Annotated[int | None, typer.Option(help="Port to listen on (or VIGIL_API_PORT).")] = None,
    workers: Annotated[int | None, typer.Option(help="Worker processes (or VIGIL_API_WORKERS).")] = None,
) -> None:
    """Serve the API until SIGTERM/SIGINT."""
    if ctx.invoked_subcommand is not None:
        return
    import uvicorn

    try:
        settings = load_settings(
            ApiSettings,
            config_file=config,
            database_url=database_url,
            api_host=host,
            api_port=port,
            api_workers=workers,
        )
        settings = ensure_secret(settings)
    except (VigilError, OSError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    options: dict[str, Any] = {
        "host": settings.api_host,
        "port": settings.api_port,
        "log_level": "info",
        "server_header": False,
        "proxy_headers": bool(settings.api_forwarded_allow_ips),
        "forwarded_allow_ips": list(settings.api_forwarded_allow_ips) or None,
    }
    if settings.api_tls_cert_file is not None:
        options["ssl_certfile"] = str(settings.api_tls_cert_file)
        options["ssl_keyfile"] = str(settings.api_tls_key_file) if settings.api_tls_key_file else None
    scheme = "https" if settings.api_tls_cert_file is not None else "http"
    typer.echo(f"vigil api: serving on {scheme}://{settings.api_host}:{settings.api_port}/", err=True)
    if settings.api_workers == 1:
        uvicorn.run(create_app(settings, provisioner=load_provisioner(config)), **options)
        return
    handoff = settings.model_dump(mode="json")
    handoff["_config_file"] = str(config) if config else None
    handoff["api_secret_key"] = settings.api_secret_key.get_secret_value() if settings.api_secret_key else None
    os.environ[_HANDOFF] = json.dumps(handoff)
    uvicorn.run("clinician_api.cli:worker_app", factory=True, workers=settings.api_workers, **options)


@app.command(
    "demo-accounts", help="Create or refresh the demo's accounts and print them (demo only: prints passwords)."
)
def demo_accounts(
    org: Annotated[str, typer.Option("--org", help="The demo organisation.")],
    config: ConfigOpt = None,
    database_url: UrlOpt = None,
) -> None:
    from datetime import UTC, datetime

    from clinician_api.auth.passwords import Passwords
    from clinician_api.demo_accounts import ensure_demo_accounts
    from clinician_api.keys import ApiKeys
    from store.connection import connect

    try:
        settings = ensure_secret(load_settings(ApiSettings, config_file=config, database_url=database_url))
        assert settings.api_secret_key is not None  # noqa: S101 - ensure_secret sets it
        keys = ApiKeys.from_secret(settings.api_secret_key.get_secret_value())
        passwords = Passwords(
            time_cost=settings.api_argon2_time_cost,
            memory_kib=settings.api_argon2_memory_kib,
            parallelism=settings.api_argon2_parallelism,
            concurrency=1,
        )
        with connect(settings.database_url, application_name="vigil-demo-accounts") as conn:
            accounts = ensure_demo_accounts(conn, org_id=org, keys=keys, passwords=passwords, now=datetime.now(UTC))
    except (VigilError, OSError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc
    typer.echo(json.dumps({"url": settings.api_public_url, "accounts": [a.as_dict() for a in accounts]}))

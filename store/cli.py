"""``vigil db``: apply and inspect schema migrations."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import psycopg
import typer

from rpm_core.errors import VigilError
from rpm_core.settings import VigilSettings, load_settings
from store.config import DEFAULT_DATABASE_URL, Flavor
from store.migrate import migrate, status

__all__ = ["StoreSettings", "app"]

app = typer.Typer(no_args_is_help=True, add_completion=False)


class StoreSettings(VigilSettings):
    # PostgreSQL connection URL (libpq) of the Vigil database to migrate or inspect (`--database-url`).
    database_url: str = DEFAULT_DATABASE_URL
    # Migration path: "auto" uses TimescaleDB when the server offers the extension, else plain PostgreSQL.
    # The first migration fixes it; asking for the other flavor later is refused (`--flavor`).
    database_flavor: Flavor = "auto"


ConfigOpt = Annotated[Path | None, typer.Option("--config", help="TOML settings file (or VIGIL_CONFIG).")]
UrlOpt = Annotated[str | None, typer.Option("--database-url", help="PostgreSQL URL (or VIGIL_DATABASE_URL).")]


def _settings(config: Path | None, url: str | None, flavor: str | None = None) -> StoreSettings:
    try:
        return load_settings(StoreSettings, config_file=config, database_url=url, database_flavor=flavor)
    except VigilError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc


@app.command("migrate")
def migrate_cmd(
    config: ConfigOpt = None,
    database_url: UrlOpt = None,
    flavor: Annotated[
        str | None, typer.Option(help="auto | postgres | timescaledb (or VIGIL_DATABASE_FLAVOR).")
    ] = None,
) -> None:
    """Apply pending migrations (idempotent)."""
    settings = _settings(config, database_url, flavor)
    try:
        applied = migrate(settings.database_url, flavor=settings.database_flavor)
    except (VigilError, psycopg.OperationalError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc
    if not applied:
        typer.echo("database is up to date; nothing to apply")
    for m in applied:
        typer.echo(f"applied {m.version:04d}_{m.name}")


@app.command("status")
def status_cmd(config: ConfigOpt = None, database_url: UrlOpt = None) -> None:
    """List applied and pending migrations. Exit status 3 when some are pending or modified."""
    settings = _settings(config, database_url)
    try:
        with psycopg.connect(settings.database_url) as conn:
            st = status(conn)
    except psycopg.OperationalError as exc:
        typer.echo(f"error: cannot connect: {exc}", err=True)
        raise typer.Exit(1) from exc
    typer.echo(f"flavor: {st.flavor or 'not migrated yet'}")
    for a in st.applied:
        mark = "modified since applied" if a.version in st.modified else "applied"
        typer.echo(f"{a.version:04d}_{a.name:<24} {mark:<24} {a.applied_at.isoformat(timespec='seconds')}")
    for m in st.pending:
        typer.echo(f"{m.version:04d}_{m.name:<24} pending")
    if st.pending or st.modified:
        raise typer.Exit(3)

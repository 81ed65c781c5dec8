"""``vigil agents``: provision, assign and revoke edge agents; organisations, patients and server keys.

::

    vigil agents keys init | rotate | retire --keep N | list
    vigil agents org create ORG --name NAME
    vigil agents patient create PATIENT --org ORG --name NAME
    vigil agents create --org ORG --patient PATIENT --out bundle.json|-
    vigil agents assign AGENT --patient PATIENT
    vigil agents revoke AGENT
    vigil agents list

The work is :mod:`provisioning`'s; these commands build its settings, call it and print. See
docs/provisioning.md for the whole flow.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from provisioning import agents, keys, tenants
from provisioning.bundles import new_enrollment
from provisioning.errors import ProvisioningError
from rpm_core.keystore import write_private
from vigil_cli.provisioning import CLOCK, EXIT_FAILED, EXIT_USAGE, ConfigOpt, UrlOpt, fail, load

__all__ = ["app"]

app = typer.Typer(no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)
keys_app = typer.Typer(no_args_is_help=True, add_completion=False, help="Server key generations.")
org_app = typer.Typer(no_args_is_help=True, add_completion=False, help="Organisations.")
patient_app = typer.Typer(no_args_is_help=True, add_completion=False, help="Patients (minimal).")
app.add_typer(keys_app, name="keys")
app.add_typer(org_app, name="org")
app.add_typer(patient_app, name="patient")


@app.callback()
def _agents() -> None:
    """Provision, assign and revoke edge agents."""


@keys_app.command("init")
def keys_init(config: ConfigOpt = None) -> None:
    """Create the first server key generation and the CA (no-op when they exist)."""
    settings = load(config)
    try:
        created = keys.init_keys(settings, now=CLOCK.now())
    except ProvisioningError as exc:
        raise fail(exc) from exc
    typer.echo("server keys exist already" if created is None else f"created server key generation {created}")


@keys_app.command("rotate")
def keys_rotate(config: ConfigOpt = None) -> None:
    """Add a new current server key generation; older ones stay accepted until retired."""
    settings = load(config)
    try:
        created = keys.rotate_keys(settings)
    except ProvisioningError as exc:
        raise fail(exc) from exc
    typer.echo(f"created server key generation {created}")


@keys_app.command("retire")
def keys_retire(keep: Annotated[int, typer.Option(min=1)] = 2, config: ConfigOpt = None) -> None:
    """Delete all but the newest KEEP generations (restart ingest afterwards)."""
    settings = load(config)
    try:
        gone = keys.retire_keys(settings, keep=keep)
    except ProvisioningError as exc:
        raise fail(exc) from exc
    typer.echo(f"retired generations {gone}" if gone else "nothing to retire")


@keys_app.command("list")
def keys_list(config: ConfigOpt = None) -> None:
    settings = load(config)
    try:
        generations = keys.list_keys(settings)
    except ProvisioningError as exc:
        raise fail(exc) from exc
    for g in generations:
        typer.echo(f"{g.generation:04d} {g.kid}{'  current' if g.current else ''}")


@org_app.command("create")
def org_create(
    org: str, name: Annotated[str, typer.Option("--name")], config: ConfigOpt = None, database_url: UrlOpt = None
) -> None:
    settings = load(config, database_url=database_url)
    try:
        tenants.create_org(settings, org, name=name)
    except ProvisioningError as exc:
        raise fail(exc) from exc
    typer.echo(f"created organisation {org}")


@patient_app.command("create")
def patient_create(
    patient: str,
    org: Annotated[str, typer.Option("--org")],
    name: Annotated[str, typer.Option("--name")],
    config: ConfigOpt = None,
    database_url: UrlOpt = None,
) -> None:
    settings = load(config, database_url=database_url)
    try:
        tenants.create_patient(settings, patient, org_id=org, name=name)
    except ProvisioningError as exc:
        raise fail(exc) from exc
    typer.echo(f"created patient {patient}")


@app.command("create")
def create_cmd(
    org: Annotated[str, typer.Option("--org")],
    patient: Annotated[str, typer.Option("--patient")],
    out: Annotated[
        Path | None,
        typer.Option("--out", help="Write the bundle (it holds secrets) to this file, mode 0600; `-`: stdout."),
    ] = None,
    agent: Annotated[
        str | None, typer.Option("--agent", help="Agent id (default: a new agt-… id); not starting with 'vigil-'.")
    ] = None,
    config: ConfigOpt = None,
    database_url: UrlOpt = None,
) -> None:
    """Create a pending agent assigned to PATIENT, give it a broker account and write its enrollment bundle."""
    if out is None:  # before anything is created: an agent whose bundle nobody saw is of no use
        typer.echo("error: --out FILE is required: the bundle holds the agent's broker password and", err=True)
        typer.echo("enrollment token and is written mode 0600 (`--out -` prints it on stdout instead)", err=True)
        raise typer.Exit(EXIT_USAGE)
    settings = load(config, database_url=database_url)
    try:  # nothing is written when this fails: a usage error
        enrollment = new_enrollment(settings, org_id=org, patient_id=patient, agent_id=agent, now=CLOCK.now())
    except ProvisioningError as exc:
        raise fail(exc, EXIT_USAGE) from exc
    try:
        created = agents.create_agent(settings, enrollment, clock=CLOCK)
    except ProvisioningError as exc:
        raise fail(exc) from exc
    aid = created.agent_id
    if str(out) == "-":
        typer.echo("warning: the bundle on stdout holds the broker password and enrollment token: keep it", err=True)
        typer.echo("out of logs and terminals' scrollback, and delete every copy after enrollment", err=True)
        typer.echo(created.bundle_json)
    else:
        try:
            write_private(out, created.bundle_json.encode())  # 0600 from the start; never through a planted symlink
        except OSError as exc:
            typer.echo(f"error: cannot write {out} ({exc.strerror}); agent {aid} exists without a bundle:", err=True)
            typer.echo(f"revoke it (vigil agents revoke {aid}) and create another", err=True)
            raise typer.Exit(EXIT_FAILED) from exc
        typer.echo(f"created agent {aid} (pending); bundle written to {out} (mode 0600)", err=True)
    typer.echo(created.note, err=True)


@app.command("revoke")
def revoke_cmd(agent: str, config: ConfigOpt = None, database_url: UrlOpt = None) -> None:
    """Remove the agent's broker account (disconnecting it at once) and make ingest refuse its keys."""
    settings = load(config, database_url=database_url)
    try:
        note = agents.revoke_agent(settings, agent, clock=CLOCK)
    except ProvisioningError as exc:
        raise fail(exc) from exc
    typer.echo(f"revoked agent {agent}; {note}")


@app.command("assign")
def assign_cmd(
    agent: str,
    patient: Annotated[str, typer.Option("--patient")],
    config: ConfigOpt = None,
    database_url: UrlOpt = None,
) -> None:
    """Assign AGENT to PATIENT from now on (the previous assignment is kept as history)."""
    settings = load(config, database_url=database_url)
    try:
        agents.assign_agent(settings, agent, patient_id=patient, clock=CLOCK)
    except ProvisioningError as exc:
        raise fail(exc) from exc
    typer.echo(f"assigned agent {agent} to patient {patient}")


@app.command("list")
def list_cmd(config: ConfigOpt = None, database_url: UrlOpt = None) -> None:
    settings = load(config, database_url=database_url)
    try:
        rows = agents.list_agents(settings)
    except ProvisioningError as exc:
        raise fail(exc) from exc
    for a in rows:
        last = a.last_seen_at.isoformat(timespec="seconds") if a.last_seen_at else "never"
        typer.echo(f"{a.org_id}\t{a.agent_id}\t{a.status}\t{a.patient_id or '-'}\tlast seen {last}")

"""``vigil agents``: provision, assign and revoke edge agents; organisations, patients and server keys.

::

    vigil agents keys init | rotate | retire --keep N | list
    vigil agents org create ORG --name NAME
    vigil agents patient create PATIENT --org ORG --name NAME
    vigil agents create --org ORG --patient PATIENT --out bundle.json|-
    vigil agents assign AGENT --patient PATIENT
    vigil agents revoke AGENT
    vigil agents list

See docs/provisioning.md for the whole flow.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Annotated

import psycopg
import typer
from pydantic import SecretStr

from broker_config.accounts import agent_account, check_agent_name
from broker_config.passwords import hash_password, new_password
from rpm_core.enrollment import BrokerEndpoint, EnrollmentBundle, ServerKeyInfo, new_token, token_digest
from rpm_core.errors import VigilError
from rpm_core.ids import AgentId, OrgId, agent_id, new_id, org_id, patient_id
from rpm_core.keystore import create_server_key, load_server_keys, retire_server_keys, write_private
from store.agents import assign_agent, create_agent, create_org, create_patient, list_agents, revoke_agent
from vigil_cli.provisioning import ProvisioningSettings, ca_of, commit_with_broker, load, now, open_db

__all__ = ["app"]

app = typer.Typer(no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)
keys_app = typer.Typer(no_args_is_help=True, add_completion=False, help="Server key generations.")
org_app = typer.Typer(no_args_is_help=True, add_completion=False, help="Organisations.")
patient_app = typer.Typer(no_args_is_help=True, add_completion=False, help="Patients (minimal).")
app.add_typer(keys_app, name="keys")
app.add_typer(org_app, name="org")
app.add_typer(patient_app, name="patient")

ConfigOpt = Annotated[Path | None, typer.Option("--config", help="TOML settings file (or VIGIL_CONFIG).")]
UrlOpt = Annotated[str | None, typer.Option("--database-url", help="PostgreSQL URL (or VIGIL_DATABASE_URL).")]


def _fail(exc: Exception, code: int = 1) -> typer.Exit:
    typer.echo(f"error: {exc}", err=True)
    return typer.Exit(code)


@app.callback()
def _agents() -> None:
    """Provision, assign and revoke edge agents."""


@keys_app.command("init")
def keys_init(config: ConfigOpt = None) -> None:
    """Create the first server key generation and the CA (no-op when they exist)."""
    settings = load(config)
    try:
        load_server_keys(settings.key_dir)
        typer.echo("server keys exist already")
    except VigilError:
        typer.echo(f"created server key generation {create_server_key(settings.key_dir)}")
    ca_of(settings)


@keys_app.command("rotate")
def keys_rotate(config: ConfigOpt = None) -> None:
    """Add a new current server key generation; older ones stay accepted until retired."""
    settings = load(config)
    typer.echo(f"created server key generation {create_server_key(settings.key_dir)}")


@keys_app.command("retire")
def keys_retire(keep: Annotated[int, typer.Option(min=1)] = 2, config: ConfigOpt = None) -> None:
    """Delete all but the newest KEEP generations (restart ingest afterwards)."""
    settings = load(config)
    try:
        gone = retire_server_keys(settings.key_dir, keep=keep)
    except VigilError as exc:
        raise _fail(exc) from exc
    typer.echo(f"retired generations {gone}" if gone else "nothing to retire")


@keys_app.command("list")
def keys_list(config: ConfigOpt = None) -> None:
    settings = load(config)
    try:
        ring = load_server_keys(settings.key_dir)
    except VigilError as exc:
        raise _fail(exc) from exc
    for gen, key in ring.generations:
        typer.echo(f"{gen:04d} {key.kid}{'  current' if key is ring.current else ''}")


@org_app.command("create")
def org_create(
    org: str, name: Annotated[str, typer.Option("--name")], config: ConfigOpt = None, database_url: UrlOpt = None
) -> None:
    settings = load(config, database_url=database_url)
    with open_db(settings) as conn:
        try:
            create_org(conn, org_id(org), name)
        except VigilError as exc:
            raise _fail(exc) from exc
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
    with open_db(settings) as conn:
        try:
            create_patient(conn, org_id=org_id(org), patient_id=patient_id(patient), display_name=name)
        except VigilError as exc:
            raise _fail(exc) from exc
    typer.echo(f"created patient {patient}")


def _bundle(settings: ProvisioningSettings, org: OrgId, agent: AgentId, password: str, token: str) -> EnrollmentBundle:
    ring = load_server_keys(settings.key_dir)
    return EnrollmentBundle(
        org=org,
        agent_id=agent,
        broker=BrokerEndpoint(
            host=settings.broker_host,
            port=settings.broker_port,
            server_name=settings.broker_host,
            ca_pem=ca_of(settings).cert_pem().decode(),
        ),
        mqtt_username=agent,
        mqtt_password=SecretStr(password),
        enrollment_token=SecretStr(token),
        server_keys=tuple(ServerKeyInfo.of(k) for k in ring.public_keys()[:4]),
        expires_at=now() + timedelta(hours=settings.enrollment_ttl_hours),
    )


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
        raise typer.Exit(2)
    settings = load(config, database_url=database_url)
    try:
        oid, pid = org_id(org), patient_id(patient)
        aid = AgentId(check_agent_name(agent_id(agent))) if agent else AgentId(new_id("agt"))
        password, token = new_password(), new_token()
        password_hash = hash_password(password)
        account = agent_account(oid, aid, password_hash)
        bundle = _bundle(settings, oid, aid, password, token)
    except VigilError as exc:
        raise _fail(exc, 2) from exc
    with open_db(settings) as conn:
        try:
            create_agent(
                conn,
                org_id=oid,
                agent_id=aid,
                patient_id=pid,
                password_hash=password_hash,
                token_sha256=token_digest(token),
                expires_at=bundle.expires_at,
                now=now(),
            )
            # The broker account exists before the COMMIT, or neither does.
            note = commit_with_broker(settings, conn, create=(account, password))
        except (VigilError, psycopg.Error, OSError) as exc:
            raise _fail(exc) from exc
    if str(out) == "-":
        typer.echo("warning: the bundle on stdout holds the broker password and enrollment token: keep it", err=True)
        typer.echo("out of logs and terminals' scrollback, and delete every copy after enrollment", err=True)
        typer.echo(bundle.to_json())
    else:
        try:
            write_private(out, bundle.to_json().encode())  # 0600 from the start; never through a planted symlink
        except OSError as exc:
            typer.echo(f"error: cannot write {out} ({exc.strerror}); agent {aid} exists without a bundle:", err=True)
            typer.echo(f"revoke it (vigil agents revoke {aid}) and create another", err=True)
            raise typer.Exit(1) from exc
        typer.echo(f"created agent {aid} (pending); bundle written to {out} (mode 0600)", err=True)
    typer.echo(note, err=True)


@app.command("revoke")
def revoke_cmd(agent: str, config: ConfigOpt = None, database_url: UrlOpt = None) -> None:
    """Remove the agent's broker account (disconnecting it at once) and make ingest refuse its keys."""
    settings = load(config, database_url=database_url)
    with open_db(settings) as conn:
        try:
            aid = agent_id(agent)
            revoke_agent(conn, aid, now=now())
            note = commit_with_broker(settings, conn, delete=aid)
        except (VigilError, psycopg.Error, OSError) as exc:
            raise _fail(exc) from exc
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
    with open_db(settings) as conn:
        try:
            assign_agent(conn, agent_id(agent), patient_id(patient), now=now())
        except VigilError as exc:
            raise _fail(exc) from exc
    typer.echo(f"assigned agent {agent} to patient {patient}")


@app.command("list")
def list_cmd(config: ConfigOpt = None, database_url: UrlOpt = None) -> None:
    settings = load(config, database_url=database_url)
    with open_db(settings) as conn:
        rows = list_agents(conn)
    for agent, org, status, patient, seen in rows:
        last = seen.isoformat(timespec="seconds") if seen else "never"
        typer.echo(f"{org}\t{agent}\t{status}\t{patient or '-'}\tlast seen {last}")

"""The agent's operator commands (mounted on ``vigil edge`` by :mod:`edge_agent.cli`).

``enroll``, ``install``/``uninstall``, ``pair``, ``run``, ``status`` and ``outbox adopt``. Settings are built once
per command (``--config``, else ``VIGIL_CONFIG``, else ``/etc/vigil/edge/agent.toml`` when it
exists; ``VIGIL_*`` variables override the file) and passed down. Every Vigil error ends the
command with one line on stderr and exit status 1.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer

from edge_agent.ble.radio import open_radio
from edge_agent.config_file import add_device
from edge_agent.enroll import SERVICE_USER, enroll, system_time_zone
from edge_agent.enroll_remote import fetch_bundle, write_fetched_bundle
from edge_agent.identity import AgentIdentity
from edge_agent.install import InstallPlan, allow_broker, install, uninstall
from edge_agent.outbox import SqliteOutbox, inspect_outbox
from edge_agent.pairing import scan_candidates
from edge_agent.retired import adopt_retired, describe_all
from edge_agent.run import NotEnrolled, RunArgs, config_path, run_agent
from edge_agent.settings import DEFAULT_CONFIG_DIR, DEFAULT_STATE_DIR, EdgeSettings, load_edge_settings
from rpm_core.clock import SystemClock
from rpm_core.errors import VigilError

__all__ = ["register"]

EXIT_FAILED = 1
ConfigOption = Annotated[Path | None, typer.Option("--config", help="Agent config (TOML).")]
BleOption = Annotated[str | None, typer.Option("--ble", help="BLE backend: bluez, or emulated (demo/tests).")]
HciOption = Annotated[str | None, typer.Option("--emulated-hci", help="A DeviceProcess's HCI (tcp-client:HOST:PORT).")]


@contextmanager
def _failing_cleanly() -> Iterator[None]:
    try:
        yield
    except VigilError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(EXIT_FAILED) from exc


def _settings(config: Path | None, **overrides: Any) -> EdgeSettings:
    return load_edge_settings(config_path(config), **overrides)


def enroll_command(
    bundle: Annotated[
        Path | None, typer.Option("--bundle", help="The enrollment bundle from `vigil agents create`.")
    ] = None,
    url: Annotated[str | None, typer.Option("--url", help="The clinician API (https://…) to enrol over.")] = None,
    token: Annotated[str | None, typer.Option("--token", help="The one-time token from the fleet page.")] = None,
    ca_file: Annotated[
        Path | None, typer.Option("--ca-file", help="The API's CA, when the token carries no pin.")
    ] = None,
    directory: Annotated[Path, typer.Option("--dir", help="Enrollment directory.")] = DEFAULT_CONFIG_DIR,
    state_dir: Annotated[Path, typer.Option("--state-dir", help="State directory (outbox).")] = DEFAULT_STATE_DIR,
    time_zone: Annotated[str | None, typer.Option("--time-zone", help="IANA zone of the devices' clocks.")] = None,
    owner: Annotated[str, typer.Option("--owner", help="Service user owning the files.")] = SERVICE_USER,
    force: Annotated[
        bool, typer.Option("--force", help="Replace an existing identity (its undelivered readings are kept).")
    ] = False,
    root: Annotated[Path, typer.Option("--root", help="Root holding the installed unit (an image).")] = Path("/"),
) -> None:
    """Generate this agent's keys and write its identity, outbox and config from a bundle, given as
    a file (--bundle) or fetched once over HTTPS with a one-time token (--url --token)."""
    if (bundle is None) == (url is None) or (url is None) != (token is None):
        raise typer.BadParameter("give --bundle FILE, or --url URL with --token TOKEN")
    with _failing_cleanly():
        fetched = None
        if url is not None and token is not None:
            fetched = write_fetched_bundle(directory, fetch_bundle(url, token, ca_file=ca_file))
        try:
            result = enroll(
                fetched or bundle or Path(),
                directory=directory,
                state_dir=state_dir,
                clock=SystemClock(),
                time_zone=time_zone or system_time_zone(),
                owner=owner,
                force=force,
            )
        finally:
            if fetched is not None:
                fetched.unlink(missing_ok=True)
    typer.echo(f"enrolled agent {result.agent} (signing key {result.sign_kid}); config {result.config}")
    plan = InstallPlan(root=root, exec_path=Path("/unused"), config_dir=directory, state_dir=state_dir)
    if plan.unit.is_file():  # installed: allow the unit to reach this broker (IPAddressAllow drop-in)
        try:
            host, port = result.broker
            for action in allow_broker(plan, host, port):
                typer.echo(action)
        except VigilError as exc:
            typer.echo(f"warning: {exc}; the agent cannot reach the broker until `vigil edge install` succeeds")
    if result.retired is not None:
        typer.echo(
            f"the replaced identity and its undelivered readings are retired in {result.retired}: the agent delivers "
            "them under that identity (revoke it only once `vigil edge status` lists it no more), or see "
            "`vigil edge outbox adopt`"
        )
    if bundle is not None:
        typer.echo(f"the bundle holds credentials: delete it now (rm {bundle})")


def install_command(
    root: Annotated[Path, typer.Option("--root", help="Install into this root (an SD-card image).")] = Path("/"),
    exec_path: Annotated[Path | None, typer.Option("--exec", help="The `vigil` executable on the target.")] = None,
    user: Annotated[str, typer.Option("--user", help="Service user.")] = SERVICE_USER,
    config_dir: Annotated[Path, typer.Option("--config-dir")] = DEFAULT_CONFIG_DIR,
    state_dir: Annotated[Path, typer.Option("--state-dir")] = DEFAULT_STATE_DIR,
) -> None:
    """Create the service user, directories and the hardened systemd unit (idempotent)."""
    executable = exec_path or Path(sys.argv[0]).resolve()
    plan = InstallPlan(root=root, exec_path=executable, user=user, config_dir=config_dir, state_dir=state_dir)
    with _failing_cleanly():
        actions = install(plan)
    typer.echo("\n".join(actions) if actions else "already installed; nothing changed")


def uninstall_command(
    root: Annotated[Path, typer.Option("--root")] = Path("/"),
    purge: Annotated[
        bool, typer.Option("--purge", help="Also delete keys, undelivered readings and the user.")
    ] = False,
    user: Annotated[str, typer.Option("--user")] = SERVICE_USER,
    config_dir: Annotated[Path, typer.Option("--config-dir")] = DEFAULT_CONFIG_DIR,
    state_dir: Annotated[Path, typer.Option("--state-dir")] = DEFAULT_STATE_DIR,
) -> None:
    """Remove the unit (and with --purge the agent's data and user)."""
    plan = InstallPlan(root=root, exec_path=Path("/unused"), user=user, config_dir=config_dir, state_dir=state_dir)
    with _failing_cleanly():
        actions = uninstall(plan, purge=purge)
    typer.echo("\n".join(actions) if actions else "nothing to remove")


def pair_command(
    config: ConfigOption = None,
    seconds: Annotated[float, typer.Option("--seconds", help="How long to scan.")] = 10.0,
    address: Annotated[str | None, typer.Option("--address", help="Pair this one without asking.")] = None,
    ble: BleOption = None,
    emulated_hci: HciOption = None,
) -> None:
    """Scan for health devices and add one to the agent's allow-list."""
    with _failing_cleanly():
        path = config_path(config)
        if path is None:
            raise typer.BadParameter("no agent config: enroll first or pass --config")
        settings = _settings(path, ble_backend=ble, emulated_hci=emulated_hci)

        async def scan() -> list[Any]:
            async with open_radio(settings) as radio:
                return await scan_candidates(radio, seconds)

        candidates = asyncio.run(scan())
        paired = {d.address for d in settings.devices}
        for i, c in enumerate(candidates, 1):
            mark = " (paired)" if c.address in paired else ""
            typer.echo(f"{i:2d}. {c.address}  {c.profile:<15} {c.name or '-':<20} {c.rssi} dBm{mark}")
        if not candidates:
            typer.echo("no health device found; wake the device (take a measurement) and scan again", err=True)
            raise typer.Exit(EXIT_FAILED)
        chosen = next((c for c in candidates if c.address == (address or "").upper()), None)
        if chosen is None and address is not None:
            typer.echo(f"error: {address} was not seen advertising a health service", err=True)
            raise typer.Exit(EXIT_FAILED)
        if chosen is None:
            number: int = typer.prompt("pair which one (number)", type=int)
            if not 1 <= number <= len(candidates):
                raise typer.BadParameter(f"choose 1-{len(candidates)}")
            chosen = candidates[number - 1]
        added = add_device(path, chosen.paired())
    typer.echo(f"{'added' if added else 'already paired:'} {chosen.address} ({chosen.profile}) in {path}")
    if added:
        typer.echo("restart the agent to connect to it: systemctl restart vigil-edge")


def run_command(
    config: ConfigOption = None,
    ble: BleOption = None,
    emulated_hci: HciOption = None,
    log_level: Annotated[str | None, typer.Option("--log-level")] = None,
) -> None:
    """Run the agent until SIGTERM/SIGINT."""
    try:
        run_agent(RunArgs(config=config, ble=ble, emulated_hci=emulated_hci, log_level=log_level))
    except NotEnrolled as exc:
        raise typer.BadParameter(str(exc)) from exc
    except VigilError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(EXIT_FAILED) from exc


def status_command(
    config: ConfigOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Device states, outbox depth and last receipt, from the local state (not the network)."""
    with _failing_cleanly():
        settings = _settings(config)
        local = inspect_outbox(settings.outbox_path)
        retired = list(describe_all(settings.state_dir))
    s = local.stats
    doc = {
        "agent": settings.agent_id,
        "registered": s.registered_at is not None,
        "outbox": {
            "depth": s.depth,
            "oldest_queued_at": _iso(s.oldest_queued_at),
            "last_sequence": s.last_allocated,
            "gaps": [[g.first, g.last, g.reason] for g in s.gaps],
            "quarantined": [
                {"seq": q.seq, "reason": q.reason, "at": _iso(q.quarantined_at)} for q in local.quarantined
            ],
            "schema_version": local.schema_version,
        },
        "last_receipt": {"through": s.last_receipt, "at": _iso(s.last_receipt_at)},
        "devices": [{k: v for k, v in d.to_doc().items() if v is not None} for d in local.devices],
        "retired": retired,
        **local.state,
    }
    if as_json:
        typer.echo(json.dumps(doc, indent=2))
        return
    typer.echo(f"agent {doc['agent']}  registered: {'yes' if doc['registered'] else 'no (buffering)'}")
    typer.echo(f"outbox: {s.depth} reading(s), oldest {_iso(s.oldest_queued_at) or '-'}, last seq {s.last_allocated}")
    typer.echo(f"last receipt: through {s.last_receipt} at {_iso(s.last_receipt_at) or 'never'}")
    for gap in s.gaps:
        typer.echo(f"gap: readings {gap.first}-{gap.last} dropped ({gap.reason}; not yet receipted)")
    for q in local.quarantined:
        typer.echo(f"quarantined: reading {q.seq} ({q.reason}) at {_iso(q.quarantined_at)}, kept sealed in the outbox")
    typer.echo(f"alarms: {', '.join(local.state.get('alarms', [])) or 'none'}")
    for r in retired:
        typer.echo(f"retired identity {r['agent']}: {r['depth']} reading(s) not delivered yet ({r['path']})")
    for d in local.devices:
        state = "connected" if d.connected else "disconnected"
        battery = "-" if d.battery_pct is None else f"{d.battery_pct}%"
        seen = _iso(d.last_seen) or "never"
        typer.echo(f"  {d.device_id}  {d.profile:<15} {state:<12} battery {battery:<5} last seen {seen}")


def adopt_command(
    retired_dir: Annotated[Path, typer.Argument(metavar="RETIRED_DIR", help="A directory `vigil edge status` lists.")],
    config: ConfigOption = None,
) -> None:
    """Re-send a retired identity's undelivered readings under this agent's identity, flagged as such.

    For when the retired identity cannot deliver them itself (its agent revoked, its bundle expired
    before it registered). Stop the agent first or it may be delivering them (refused then).
    """
    with _failing_cleanly():
        settings = _settings(config)
        identity = AgentIdentity.load(settings.enrollment_dir, org=settings.org_id, agent=settings.agent)
        clock = SystemClock()
        current = SqliteOutbox.open(
            settings.outbox_path,
            key=identity.outbox_key,
            agent=identity.agent,
            kid=identity.keys.public().kex_kid,
            clock=clock,
            max_readings=settings.outbox_max_readings,
        )
        try:
            result = adopt_retired(retired_dir, current=current, identity=identity, clock=clock)
        finally:
            current.close()
    typer.echo(f"adopted {result.adopted} reading(s) of retired identity {result.agent} as {identity.agent}")
    for gap in result.gaps:
        typer.echo(f"note: {result.agent} had dropped readings {gap.first}-{gap.last} (outbox overflow) before")
    typer.echo("they are sent with the agent's own readings (restart it to send them at once)")


def _iso(value: Any) -> str | None:
    return None if value is None else str(value.isoformat())


def register(app: typer.Typer) -> None:
    commands: dict[str, Callable[..., None]] = {
        "enroll": enroll_command,
        "install": install_command,
        "uninstall": uninstall_command,
        "pair": pair_command,
        "run": run_command,
        "status": status_command,
    }
    for name, function in commands.items():
        app.command(name)(function)
    outbox = typer.Typer(no_args_is_help=True, add_completion=False, help="The agent's outbox.")
    outbox.command("adopt")(adopt_command)
    app.add_typer(outbox, name="outbox")

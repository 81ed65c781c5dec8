"""``vigil edge run``: build the settings, load the identity and run the agent until SIGTERM/SIGINT.

:func:`run_agent` is the command's body, shared by the typer command (:mod:`edge_agent.commands`)
and by :func:`fast_run`, the way a Pi starts the agent: ``vigil`` (``vigil_cli.main``) hands it
``vigil edge run``'s arguments before importing typer, so the long-running agent process does not
hold the command-line library it used for one parse (3.5 MB resident, docs/performance.md). What
:func:`fast_run` does not recognise exactly (``--help``, an unknown option, a missing value) it
leaves to the typer command by returning None, so usage messages and help stay typer's.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import signal
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from edge_agent.agent import Agent
from edge_agent.identity import AgentIdentity
from edge_agent.settings import CONFIG_NAME, DEFAULT_CONFIG_DIR, load_edge_settings
from rpm_core.errors import ConfigError, VigilError
from rpm_core.plainsettings import CONFIG_ENV

__all__ = [
    "EXIT_FAILED",
    "EXIT_USAGE",
    "NotEnrolled",
    "RunArgs",
    "config_path",
    "fast_run",
    "parse_run_args",
    "run_agent",
]

EXIT_FAILED: Final = 1
EXIT_USAGE: Final = 2  # what typer exits with for a bad parameter
_OPTIONS: Final = {"--config": "config", "--ble": "ble", "--emulated-hci": "emulated_hci", "--log-level": "log_level"}


class NotEnrolled(ConfigError):
    """``run`` on an agent that ``vigil edge enroll`` has not set up yet."""

    def __init__(self) -> None:
        super().__init__("this agent is not enrolled: vigil edge enroll --bundle FILE")


@dataclass(frozen=True, slots=True)
class RunArgs:
    config: Path | None = None
    ble: str | None = None
    emulated_hci: str | None = None
    log_level: str | None = None


def parse_run_args(argv: list[str]) -> RunArgs | None:
    """``--config P``, ``--ble B``, ``--emulated-hci H``, ``--log-level L`` (also ``--opt=value``),
    each at most once; None for anything else (typer's parser then says what is wrong)."""
    values: dict[str, str] = {}
    rest = list(argv)
    while rest:
        option, eq, value = rest.pop(0).partition("=")
        if option not in _OPTIONS or _OPTIONS[option] in values:
            return None
        if not eq:
            if not rest or rest[0].startswith("-"):
                return None
            value = rest.pop(0)
        values[_OPTIONS[option]] = value
    config = values.pop("config", None)
    return RunArgs(config=None if config is None else Path(config), **values)


def config_path(option: Path | None) -> Path | None:
    """``--config``, else ``VIGIL_CONFIG``, else the installed config when it exists."""
    if option is not None:
        return option
    if os.environ.get(CONFIG_ENV):
        return Path(os.environ[CONFIG_ENV])
    default = DEFAULT_CONFIG_DIR / CONFIG_NAME
    return default if default.is_file() else None


def run_agent(args: RunArgs) -> None:
    """Run the agent until SIGTERM/SIGINT; :class:`VigilError` (:class:`NotEnrolled` among them) if
    it cannot start."""
    settings = load_edge_settings(
        config_path(args.config), ble_backend=args.ble, emulated_hci=args.emulated_hci, log_level=args.log_level
    )
    logging.basicConfig(
        level=logging.WARNING,  # libraries (bumble, paho, bleak) stay quiet
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
        force=True,
    )
    logging.getLogger("edge_agent").setLevel(settings.log_level.upper())
    if not settings.enrolled:
        raise NotEnrolled
    if settings.ble_backend == "emulated" and settings.emulated_hci is None and not settings.devices:
        from edge_agent.emulation.demo import demo_devices  # the built-in demo devices, paired implicitly

        settings = dataclasses.replace(settings, devices=demo_devices(settings.demo_seed))
    identity = AgentIdentity.load(settings.enrollment_dir, org=settings.org_id, agent=settings.agent)
    asyncio.run(_run(Agent(settings, identity)))


async def _run(agent: Agent) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await agent.run(stop)


def fast_run(argv: list[str]) -> int | None:
    """``vigil edge run ARGV`` without typer: the exit status, or None to hand ``argv`` to typer."""
    args = parse_run_args(argv)
    if args is None:
        return None
    try:
        run_agent(args)
    except NotEnrolled as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except VigilError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    return 0

"""``vigil edge run``'s own argument parser (:func:`edge_agent.run.parse_run_args`): exactly the
typer command's options, anything else handed back to typer (None)."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge_agent.config_file import write_config
from edge_agent.run import EXIT_USAGE, RunArgs, fast_run, parse_run_args


def test_the_run_options() -> None:
    assert parse_run_args([]) == RunArgs()
    argv = ["--config", "/etc/a.toml", "--ble", "emulated", "--emulated-hci=tcp-client:h:1", "--log-level", "debug"]
    assert parse_run_args(argv) == RunArgs(
        config=Path("/etc/a.toml"), ble="emulated", emulated_hci="tcp-client:h:1", log_level="debug"
    )


@pytest.mark.parametrize(
    "argv",
    [
        ["--help"],
        ["-h"],
        ["--config"],
        ["--config", "--ble", "x"],
        ["--ble", "a", "--ble", "b"],
        ["--verbose"],
        ["extra-argument"],
        ["--conf", "x"],
    ],
)
def test_anything_else_is_typers(argv: list[str]) -> None:
    assert parse_run_args(argv) is None
    assert fast_run(argv) is None


def test_an_unenrolled_agent_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "agent.toml"
    write_config(config, {"time_zone": "UTC"}, [])
    assert fast_run(["--config", str(config)]) == EXIT_USAGE
    assert capsys.readouterr().err == "error: this agent is not enrolled: vigil edge enroll --bundle FILE\n"


def test_a_bad_config_fails_with_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert fast_run(["--config", str(tmp_path / "missing.toml")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: configuration file")
    assert err.count("\n") == 1

"""The demo believes its API listens only when the API says so, not when the port answers.

Between the demo's probe of a port and uvicorn's bind another program (another demo) may take the
port; the port then answers, but not with our server. ``_api_bound`` reads the server's own log."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from vigil_cli.demo.platform import DemoError, _api_bound
from vigil_cli.demo.supervisor import Child, Supervisor


def child(tmp_path: Path, script: str, log: Path) -> Child:
    supervisor = Supervisor(base_env={})
    return supervisor.start("api", [sys.executable, "-c", script], log_path=log)


def test_its_own_listening_line_is_the_signal(tmp_path: Path) -> None:
    log = tmp_path / "api.log"
    log.write_bytes(b"INFO:     Uvicorn running on http://127.0.0.1:8000 (an earlier run)\n")
    offset = log.stat().st_size  # only what this start writes counts
    c = child(
        tmp_path,
        "import sys, time; time.sleep(0.3); print('INFO:     Uvicorn running on x', flush=True); time.sleep(30)",
        log,
    )
    try:
        assert _api_bound(c, offset, timeout_s=20) is True
    finally:
        c.proc.kill()
        c.proc.wait()


def test_a_port_taken_at_bind_asks_for_another(tmp_path: Path) -> None:
    log = tmp_path / "api.log"
    c = child(
        tmp_path,
        "import sys; print('ERROR: [Errno 98] error while attempting to bind: address already in use'); sys.exit(3)",
        log,
    )
    assert _api_bound(c, 0, timeout_s=20) is False


def test_any_other_exit_at_start_is_the_demos_error(tmp_path: Path) -> None:
    log = tmp_path / "api.log"
    c = child(tmp_path, "import sys; print('no settings'); sys.exit(2)", log)
    with pytest.raises(DemoError, match="api exited at start with status 2"):
        _api_bound(c, 0, timeout_s=20)

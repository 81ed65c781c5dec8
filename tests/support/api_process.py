"""A real ``vigil api`` process for tests: uvicorn on a free port, stopped with SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

import httpx

from vigil_testkit import procs
from vigil_testkit.net import free_port

__all__ = ["ApiProcess", "api_env", "running_api"]

VIGIL = [sys.executable, "-m", "vigil_cli"]


def api_env(url: str, secret_key: str, **extra: str) -> dict[str, str]:
    """Environment for a test server: cheap argon2, cookies over plain HTTP."""
    return {
        **os.environ,
        "VIGIL_CONFIG": "",
        "VIGIL_DATABASE_URL": url,
        "VIGIL_API_SECRET_KEY": secret_key,
        "VIGIL_API_COOKIE_SECURE": "false",
        "VIGIL_API_ARGON2_TIME_COST": "1",
        "VIGIL_API_ARGON2_MEMORY_KIB": "1024",
        "VIGIL_API_ARGON2_PARALLELISM": "1",
        "VIGIL_API_STREAM_PING_S": "0.5",
        **extra,
    }


class ApiProcess:
    def __init__(self, proc: subprocess.Popen[str], base: str) -> None:
        self.proc = proc
        self.base = base

    def stop(self) -> str:
        """SIGTERM (a graceful shutdown), then the process's stderr."""
        proc = self.proc
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        err = proc.stderr.read() if proc.stderr else ""
        if proc.stderr:
            proc.stderr.close()
        return err


def _wait_ready(api: ApiProcess, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if api.proc.poll() is not None:
            raise AssertionError(f"vigil api exited: {api.stop()[-3000:]}")
        try:
            if httpx.get(f"{api.base}/readyz", timeout=1.0, verify=False).status_code == 200:  # noqa: S501
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise AssertionError("vigil api did not become ready")


@contextmanager
def running_api(
    env: Mapping[str, str], *extra: str, scheme: str = "http", timeout: float = 30.0
) -> Iterator[ApiProcess]:
    port = free_port()
    proc = procs.popen(
        [*VIGIL, "api", "--host", "127.0.0.1", "--port", str(port), *extra],
        env=dict(env),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    api = ApiProcess(proc, f"{scheme}://127.0.0.1:{port}")
    try:
        _wait_ready(api, timeout)
        yield api
    finally:
        api.stop()

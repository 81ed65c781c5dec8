"""Child processes of ``vigil demo``: started in order, stopped in reverse, never orphaned.

Every child gets ``PR_SET_PDEATHSIG`` = SIGTERM, so even if the demo itself is killed with
SIGKILL the kernel stops its children. A clean stop sends SIGTERM (services drain and acknowledge
what they committed), waits, then SIGKILLs what is left.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["Child", "Supervisor", "die_with_parent"]

log = logging.getLogger(__name__)
_PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    """``preexec_fn``: SIGTERM when the parent dies, and a session (process group) of its own."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    os.setsid()


@dataclass
class Child:
    name: str
    argv: Sequence[str]
    log_path: Path
    env: Mapping[str, str] = field(default_factory=dict)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return None if self.proc is None else self.proc.pid

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def exit_code(self) -> int | None:
        return None if self.proc is None else self.proc.poll()


class Supervisor:
    def __init__(self, *, base_env: Mapping[str, str]) -> None:
        self._base_env = dict(base_env)
        self.children: list[Child] = []

    def start(self, name: str, argv: Sequence[str], *, log_path: Path, env: Mapping[str, str] | None = None) -> Child:
        child = Child(name, list(argv), log_path, dict(env or {}))
        log_path.parent.mkdir(parents=True, exist_ok=True)
        out = log_path.open("ab")
        try:
            child.proc = subprocess.Popen(  # noqa: S603 - argv built by the demo, never from input
                list(argv),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=out,
                env={**os.environ, **self._base_env, **child.env},
                preexec_fn=die_with_parent,  # needed for PDEATHSIG; children start from the main thread
            )
        finally:
            out.close()
        self.children.append(child)
        log.info("started %s pid %s", name, child.pid)
        return child

    def dead(self) -> list[Child]:
        return [c for c in self.children if c.proc is not None and not c.running()]

    def stop_all(self, *, grace_s: float = 15.0) -> None:
        """SIGTERM in reverse start order, wait up to ``grace_s`` for each tier, then SIGKILL."""
        for child in reversed(self.children):
            self._stop(child, grace_s)

    @staticmethod
    def _stop(child: Child, grace_s: float) -> None:
        if child.proc is None:
            return
        if child.running():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(child.proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + grace_s
        while child.running() and time.monotonic() < deadline:
            time.sleep(0.05)
        if child.running():
            log.warning("%s did not stop in %.0f s; killing it", child.name, grace_s)
        with contextlib.suppress(ProcessLookupError):  # the whole group: grandchildren too
            os.killpg(child.proc.pid, signal.SIGKILL)
        child.proc.wait()

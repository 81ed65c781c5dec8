"""Every process a test starts dies with the run: at its fixture's end, at exit, on Ctrl-C and on SIGTERM.

Start long-running children (Mosquitto, coturn, uvicorn, ``vigil ...`` services, agents) with
:func:`popen` instead of ``subprocess.Popen``:

- each child leads its own process group, so killing the group also kills what it started (the
  demo's broker and agents, a shell's children);
- on Linux each child asks the kernel for SIGKILL when the thread that started it dies
  (``PR_SET_PDEATHSIG``), which covers a pytest that was itself killed with SIGKILL. Only children
  started from the main thread ask for it: a thread that exits would otherwise take its children
  with it;
- every live child is remembered; :func:`kill_all` kills their groups. It runs at interpreter exit
  and from the SIGTERM/SIGHUP handler :func:`install_signal_handlers` sets up (the root conftest
  does), which then raises KeyboardInterrupt so that pytest tears down as after Ctrl-C.

A child in its own process group does not get the terminal's Ctrl-C itself: pytest gets it, raises
KeyboardInterrupt, and the fixtures' finalizers and :func:`kill_all` end the children.
``tests/test_process_lifetime.py`` checks both paths and that no test calls ``subprocess.Popen``
directly.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Sequence
from types import FrameType
from typing import Any

__all__ = ["install_signal_handlers", "kill_all", "kill_group", "live", "popen"]

_PR_SET_PDEATHSIG = 1
_lock = threading.Lock()
_children: dict[int, subprocess.Popen[Any]] = {}


def _libc_prctl() -> Callable[..., int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(None, use_errno=True).prctl  # type: ignore[no-any-return]
    except (OSError, AttributeError):
        return None


_prctl = _libc_prctl()


def _death_signal(parent: int) -> Callable[[], None]:
    def preexec() -> None:  # runs in the child between fork and exec: async-signal-safe calls only
        if _prctl is not None:
            _prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != parent:  # the parent died before the request was in place
            os._exit(1)

    return preexec


def popen(args: Sequence[str | os.PathLike[str]], **kwargs: Any) -> subprocess.Popen[Any]:
    """``subprocess.Popen(args, **kwargs)`` in its own process group, remembered until it is reaped."""
    if "preexec_fn" in kwargs or "process_group" in kwargs:
        raise TypeError("popen owns the child's process group and death signal")
    if threading.current_thread() is threading.main_thread():
        kwargs["preexec_fn"] = _death_signal(os.getpid())
    if not kwargs.get("start_new_session"):  # a new session is a new process group too
        kwargs["process_group"] = 0
    proc: subprocess.Popen[Any] = subprocess.Popen(args, **kwargs)
    with _lock:
        for pid in [pid for pid, p in _children.items() if p.poll() is not None]:
            del _children[pid]
        _children[proc.pid] = proc
    return proc


def kill_group(proc: subprocess.Popen[Any], sig: int = signal.SIGKILL) -> None:
    """Send ``sig`` to the child's whole process group (whatever is left of it) and reap the child on SIGKILL."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, sig)
    if sig == signal.SIGKILL:
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(5)


def live() -> list[subprocess.Popen[Any]]:
    """The children started through :func:`popen` that have not exited yet."""
    with _lock:
        return [p for p in _children.values() if p.poll() is None]


def kill_all() -> None:
    """SIGKILL every remembered child's process group (also groups whose leader already exited)."""
    with _lock:
        procs = list(_children.values())
        _children.clear()
    for proc in procs:
        kill_group(proc)


_installed = False


def _on_signal(signum: int, _frame: FrameType | None) -> None:
    kill_all()
    raise KeyboardInterrupt(f"signal {signal.Signals(signum).name}")


def install_signal_handlers() -> None:
    """SIGTERM and SIGHUP kill the children, then stop pytest as Ctrl-C does (so finalizers run)."""
    global _installed
    if _installed or threading.current_thread() is not threading.main_thread():
        return
    for sig in (signal.SIGTERM, signal.SIGHUP):
        if signal.getsignal(sig) in (signal.SIG_DFL, None):
            signal.signal(sig, _on_signal)
    _installed = True


atexit.register(kill_all)

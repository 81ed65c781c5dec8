"""Every process a test starts dies with the run (vigil_testkit/procs.py), also when pytest is
stopped with SIGTERM or killed with SIGKILL, and no test starts one around that helper."""

from __future__ import annotations

import ast
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from vigil_testkit import procs

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent

# A stand-in for pytest: installs the handlers, starts a child that starts a grandchild (as
# `vigil demo` starts its broker), says their pids, then waits to be signalled.
PARENT = """
import json, subprocess, sys, time
from vigil_testkit import procs
procs.install_signal_handlers()
try:
    child = procs.popen(["/bin/sh", "-c", "sleep 1000 & echo $!; wait"], stdout=subprocess.PIPE, text=True)
    grandchild = int(child.stdout.readline())
    print(json.dumps({"child": child.pid, "grandchild": grandchild}), flush=True)
    time.sleep(1000)
except KeyboardInterrupt:
    print("interrupted", flush=True)
    raise
"""


def _gone(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ", 1)[1].startswith("Z")  # a zombie has died already
    except FileNotFoundError:
        return True


def _wait_gone(pids: list[int], timeout: float = 30) -> list[int]:
    deadline = time.monotonic() + timeout
    while (alive := [p for p in pids if not _gone(p)]) and time.monotonic() < deadline:
        time.sleep(0.05)
    return alive


def _start_parent() -> tuple[subprocess.Popen[str], dict[str, int]]:
    parent = procs.popen([sys.executable, "-c", PARENT], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    assert parent.stdout is not None
    pids: dict[str, int] = json.loads(parent.stdout.readline())
    return parent, pids


def test_sigterm_of_the_run_kills_children_and_grandchildren() -> None:
    parent, pids = _start_parent()
    try:
        assert _wait_gone(list(pids.values()), timeout=0) == list(pids.values())  # both run
        parent.send_signal(signal.SIGTERM)
        out, _ = parent.communicate(timeout=30)
        assert "interrupted" in out  # SIGTERM stopped it as Ctrl-C does (finalizers run)
        assert parent.returncode != 0
        assert _wait_gone(list(pids.values())) == []
    finally:
        procs.kill_group(parent)
        if parent.stdout is not None:
            parent.stdout.close()
        for pid in pids.values():
            if not _gone(pid):
                os.kill(pid, signal.SIGKILL)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_sigkill_of_the_run_still_kills_its_children() -> None:
    parent, pids = _start_parent()
    try:
        parent.kill()  # no handler, no atexit: only the kernel's parent-death signal is left
        parent.wait(10)
        assert _wait_gone([pids["child"]]) == []
    finally:
        procs.kill_group(parent)
        if parent.stdout is not None:
            parent.stdout.close()
        for pid in pids.values():
            if not _gone(pid):
                os.kill(pid, signal.SIGKILL)


def test_no_test_starts_a_process_around_the_helper() -> None:
    calls = []
    for path in TESTS.rglob("*.py"):
        if "node_modules" in path.parts:
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Call) and (
                (isinstance(node.func, ast.Attribute) and node.func.attr == "Popen")
                or (isinstance(node.func, ast.Name) and node.func.id == "Popen")
            ):
                calls.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert calls == [], "start processes with vigil_testkit.procs.popen: " + ", ".join(calls)

"""bench.mqtt_clients at tiny scale against the real broker: every client drains its session with
its acknowledgements after the (simulated) commit, in arrival order, and the broker has nothing
left to redeliver; a client that is not installed is skipped with a note. No timing is asserted."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from bench.mqtt_clients import CLIENTS

ROOT = Path(__file__).resolve().parents[2]
FIGURES = {
    "messages_per_s",
    "cpu_us_per_message",
    "client_cpu_us_per_message",
    "cpu_pct",
    "broker_cpu_us_per_message",
    "window_s",
}


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bench.mqtt_clients", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=280,
        check=False,
    )


@pytest.mark.timeout(300)
def test_every_client_acks_after_commit_in_order_and_leaves_nothing_behind() -> None:
    # A batch smaller than the message count and a commit that takes time: acks wait for it.
    done = _run("--messages", "300", "--batch", "64", "--commit-ms", "5", "--commit-cpu-us", "20", "--timeout", "60")
    assert done.returncode == 0, done.stderr[-3000:]
    out: dict[str, Any] = json.loads(done.stdout.splitlines()[-1])
    assert out["messages"] == 300
    assert 250 <= out["payload_bytes"] <= 500  # one sealed one-reading envelope
    assert set(out["clients"]) == set(CLIENTS)
    for name, res in out["clients"].items():
        module = "paho.mqtt" if name == "paho" else name
        if importlib.util.find_spec(module) is None:
            assert "not installed" in res["skipped"]
            continue
        assert res["publisher"] == {**res["publisher"], "published": 300, "complete": True}
        assert (res["received"], res["acked"], res["complete"]) == (300, 300, True), name
        assert res["ack_in_order"] is True, name
        assert res["session_present"] is True, name
        assert res["redelivered"] == 0, name
        assert set(res) >= FIGURES, name
        assert res["cpu_us_per_message"] > 20  # the burnt commit CPU is in it
        assert res["client_cpu_us_per_message"] == pytest.approx(res["cpu_us_per_message"] - 20, abs=0.2)
        assert res["manual_ack"]
        assert res["ack_order"]


def test_an_unknown_client_is_refused_before_anything_starts() -> None:
    done = _run("--clients", "paho,mosquitto_sub")
    assert done.returncode == 2
    assert "unknown client(s) ['mosquitto_sub']" in done.stderr

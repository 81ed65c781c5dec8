"""The issue 15 measuring tools run and say what docs/performance.md reads from them (no timings are
asserted: only that each figure is there and what was loaded)."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any


def _run(*args: str) -> dict[str, Any]:
    done = subprocess.run([sys.executable, "-m", *args], capture_output=True, text=True, check=True, timeout=300)
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def test_ingest_opener_reports_every_stage() -> None:
    out = _run("bench.ingest_opener", "--envelopes", "20", "--agents", "3", "--repeat", "2")
    assert (out["envelopes"], out["agents"], out["readings_per_envelope"]) == (20, 3, 1)
    for stage in ("decrypt", "open", "open_decode", "ed25519_cryptography", "ed25519_pynacl"):
        assert out[f"{stage}_cpu_us_min"] > 0
        assert out[f"{stage}_cpu_us_median"] >= out[f"{stage}_cpu_us_min"]


def test_edge_imports_lists_the_agents_imports_without_dnspython() -> None:
    """What `vigil edge run` imports, measured in a fresh interpreter: the agent's own modules are
    there, dnspython (paho's optional SRV support) is not, nor any server package."""
    out = _run("bench.edge_imports", "--top", "2000")
    names = {m["module"] for m in out["modules"]}
    assert {"edge_agent.agent", "edge_agent.mqtt", "paho.mqtt.client", "rpm_core.envelope"} <= names
    assert not {n for n in names if n == "dns" or n.startswith(("dns.", "store", "ingest", "alerts", "psycopg"))}
    assert "nacl.bindings" in names
    assert not {n for n in names if n.startswith("cryptography")}  # libsodium seals (issue 15 item 4)
    assert out["rss_mb_after"] > out["rss_mb_before"] > 0


def test_edge_seal_compares_every_stage_after_checking_both_sealers_agree() -> None:
    """bench.edge_seal asserts that the cryptography reference sealer and the agent's give the same
    bytes (envelope and outbox row) before it times them, so a run that prints is a valid comparison."""
    out = _run("bench.edge_seal", "--units", "10", "--repeat", "2")
    assert (out["units"], out["readings_per_envelope"]) == (10, 1)
    for stage in ("seal", "sign", "exchange", "aead", "row_seal", "row_open"):
        for via in ("pynacl", "cryptography"):
            assert out[f"{stage}_{via}_cpu_us_min"] > 0
            assert out[f"{stage}_{via}_cpu_us_median"] >= out[f"{stage}_{via}_cpu_us_min"]
    assert out["seal_pynacl_uncached_cpu_us_min"] > 0

"""``bench.edge_window`` at a tiny scale: every confirmed indication is measured, the figures are
ordered and the append time is part of the window (shape and sanity, never a timing claim)."""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

from bench.edge_window import measure, summary


def test_summary_orders_its_figures() -> None:
    figures = summary([3_000_000, 1_000_000, 2_000_000])
    assert figures["count"] == 3
    assert figures["p50_ms"] == 2.0
    assert figures["p50_ms"] <= figures["p99_ms"] <= figures["max_ms"] == 3.0
    assert summary([]) == {"count": 0}


def test_a_small_run_measures_every_confirmed_indication(tmp_path: Path) -> None:
    args = argparse.Namespace(readings=10, interval_s=0.01, strap_interval_s=0.05)
    result = asyncio.run(measure(args, tmp_path))
    assert result["confirmed_indications"] == result["count"] == 10
    assert 0 < result["p50_ms"] <= result["p99_ms"] <= result["max_ms"]
    assert result["append_ms"]["count"] >= result["count"] + result["notifications"]["count"]  # one per value
    assert "fsync" in result["bound"]
    assert result["outbox_filesystem"] != "unknown on unknown"

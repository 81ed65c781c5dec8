"""The import-linter contracts (docs/design.md's dependency rules) really fail on a violation.

A copy of the packages with one forbidden import added (edge_agent -> store, alerts -> consult)
must make `lint-imports` exit non-zero naming the broken contract; the unchanged copy must pass.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = (
    "rpm_core",
    "edge_agent",
    "broker_config",
    "store",
    "ingest",
    "provisioning",
    "alerts",
    "consult",
    "clinician_api",
    "vigil_cli",
    "bench",
    "scripts",
    "vigil_testkit",
)


def _lint(tree: Path) -> subprocess.CompletedProcess[str]:
    lint = Path(sys.executable).parent / "lint-imports"
    env = {**os.environ, "PYTHONPATH": str(tree)}
    return subprocess.run([str(lint)], cwd=tree, env=env, capture_output=True, text=True, check=False, timeout=300)


def _copy(tmp_path: Path) -> Path:
    tree = tmp_path / "tree"
    tree.mkdir()
    shutil.copy(ROOT / "pyproject.toml", tree)
    for package in PACKAGES:
        shutil.copytree(ROOT / package, tree / package, ignore=shutil.ignore_patterns("__pycache__"))
    return tree


def test_contracts_pass_on_the_tree_and_fail_on_a_forbidden_import(tmp_path: Path) -> None:
    tree = _copy(tmp_path)
    clean = _lint(tree)
    assert clean.returncode == 0, clean.stdout[-2000:]
    module = tree / "edge_agent" / "agent.py"
    module.write_text(module.read_text() + "\nimport store.readings  # noqa: E402,F401\n")
    broken = _lint(tree)
    assert broken.returncode != 0
    assert "edge_agent ships alone to the Pi: no server packages BROKEN" in broken.stdout


def test_alerts_importing_consult_breaks_its_contract(tmp_path: Path) -> None:
    """The sinks live in consult and the composition root wires them: an alerts module reaching for a
    sink (even the harmless RecordingSink) is refused."""
    tree = _copy(tmp_path)
    module = tree / "alerts" / "engine.py"
    module.write_text(module.read_text() + "\nimport consult.sinks  # noqa: E402,F401\n")
    broken = _lint(tree)
    assert broken.returncode != 0
    assert "alerts never imports consult BROKEN" in broken.stdout


def test_bench_speaking_sql_or_importing_tests_breaks_its_contracts(tmp_path: Path) -> None:
    """bench goes through store for its SQL and through vigil_testkit for real services: psycopg in a
    benchmark, or a benchmark reaching into tests (the old bench <-> tests cycle), is refused."""
    tree = _copy(tmp_path)
    for name, line in (("cohort.py", "import psycopg"), ("fleet.py", "import tests.support.pg")):
        module = tree / "bench" / name
        module.write_text(module.read_text() + f"\n{line}  # noqa: E402,F401\n")
    broken = _lint(tree)
    assert broken.returncode != 0
    assert "only store speaks SQL BROKEN" in broken.stdout
    assert "bench never imports tests (shared workload code is in vigil_testkit) BROKEN" in broken.stdout


def test_the_agents_run_path_reaching_cryptography_breaks_its_contract(tmp_path: Path) -> None:
    """The agent seals with libsodium; enrolment may load cryptography, the running agent may not:
    an outbox module importing the enrolment code (which checks certificates with cryptography) is
    refused through the indirect chain agent -> outbox -> enroll_remote -> cryptography."""
    tree = _copy(tmp_path)
    module = tree / "edge_agent" / "outbox" / "aio.py"
    module.write_text(module.read_text() + "\nimport edge_agent.enroll_remote  # noqa: E402,F401\n")
    broken = _lint(tree)
    assert broken.returncode != 0
    assert "the agent's run path never imports cryptography BROKEN" in broken.stdout

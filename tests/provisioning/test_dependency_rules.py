"""Provisioning's two import-linter contracts really fail on a violation (as tests/test_dependency_rules.py
does for edge_agent): provisioning reaching the command line, and a package below it importing it."""

from __future__ import annotations

from pathlib import Path

from tests.test_dependency_rules import _copy, _lint

OWN = "provisioning imports only rpm_core, store and broker_config"
WHO = "only vigil_cli and clinician_api may import provisioning"


def _append(path: Path, line: str) -> None:
    path.write_text(path.read_text() + f"\n{line}  # noqa: E402,F401\n")


def test_provisioning_contracts_fail_on_a_forbidden_import(tmp_path: Path) -> None:
    tree = _copy(tmp_path)
    _append(tree / "provisioning" / "agents.py", "import typer")
    _append(tree / "ingest" / "service.py", "import provisioning.agents")
    broken = _lint(tree)
    assert broken.returncode != 0
    report = " ".join(broken.stdout.split())  # contract names may wrap at 80 columns
    assert f"{OWN} BROKEN" in report
    assert f"{WHO} BROKEN" in report
    assert "provisioning.agents -> typer" in report
    assert "ingest.service -> provisioning.agents" in report

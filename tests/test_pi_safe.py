"""What ships to a Pi (rpm_core, edge_agent but its emulation subpackage) reaches no server code and
no bumble: by import-linter's contract, and in a fresh interpreter by what it really loads.

scripts/pi_install_check.py goes one step further (a new venv with only the ``edge`` extra, then
``vigil edge --help``); it installs packages, so it is not part of the suite.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
import tomllib
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
CONTRACT = "nothing shipped to the Pi imports server code or bumble"
# Not one of these may be loaded by importing the agent: server packages, their libraries, bumble.
FORBIDDEN_ROOTS = (
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
    "psycopg",
    "psycopg_pool",
    "fastapi",
    "starlette",
    "uvicorn",
    "pandas",
    "sklearn",
    "bumble",
    "edge_agent.emulation",
)

# In a fresh interpreter: import every module of rpm_core and edge_agent except edge_agent.emulation,
# run the `vigil edge` commands' --help (their own app, as `vigil edge` mounts it), then report
# which modules are loaded.
_PROBE = textwrap.dedent(
    """
    import json, pkgutil, sys
    import edge_agent, rpm_core

    skipped = []

    def walk(package):
        # pkgutil.walk_packages would import edge_agent.emulation to look inside it: walk by hand.
        for info in pkgutil.iter_modules(package.__path__, package.__name__ + "."):
            if info.name == "edge_agent.emulation":
                skipped.append(info.name)
                continue
            module = __import__(info.name, fromlist=["_"])
            if info.ispkg:
                walk(module)

    walk(rpm_core)
    walk(edge_agent)
    from edge_agent.cli import app

    for command in ([], ["run"], ["enroll"], ["pair"], ["status"], ["install"], ["decode"]):
        try:
            app([*command, "--help"], prog_name="vigil edge")
        except SystemExit:
            pass
    print(json.dumps({"modules": sorted(sys.modules), "skipped": skipped}))
    """
)


def _loaded(probe: str) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    out = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, env=env, capture_output=True, text=True, check=True, timeout=120
    )
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def _forbidden(modules: list[str]) -> list[str]:
    return [m for m in modules if any(m == root or m.startswith(root + ".") for root in FORBIDDEN_ROOTS)]


def test_importing_everything_the_pi_runs_loads_no_server_module_and_no_bumble() -> None:
    result = _loaded(_PROBE)
    modules = result["modules"]
    assert "edge_agent.agent" in modules
    assert "edge_agent.commands" in modules
    assert "edge_agent.uplink" in modules
    assert result["skipped"] == ["edge_agent.emulation"]  # the probe did see what it left out
    assert _forbidden(modules) == []


def test_the_probe_sees_bumble_when_it_is_loaded() -> None:
    # The check above can fail: the demo devices (edge_agent.emulation) do load bumble.
    modules = _loaded(
        "import json, sys; import edge_agent.emulation.demo; print(json.dumps({'modules': sorted(sys.modules)}))"
    )
    assert {"bumble", "edge_agent.emulation"} <= set(_forbidden(modules["modules"]))


def _contract() -> dict[str, Any]:
    config: dict[str, Any] = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    [contract] = [c for c in config["contracts"] if c["name"] == CONTRACT]
    return {**contract, "root_packages": config["root_packages"]}


def test_the_contract_forbids_every_server_package_and_what_the_probe_forbids() -> None:
    contract = _contract()
    servers = set(contract["root_packages"]) - {"rpm_core", "edge_agent"}
    assert servers <= set(contract["forbidden_modules"])  # a new server package must be added there
    assert set(FORBIDDEN_ROOTS) == set(contract["forbidden_modules"])
    assert contract.get("allow_indirect_imports", False) is False
    assert contract["source_modules"] == ["rpm_core", "edge_agent.*"]  # new modules are covered


def _tree(tmp_path: Path) -> Path:
    tree = tmp_path / "tree"
    tree.mkdir()
    shutil.copy(ROOT / "pyproject.toml", tree)
    for package in _contract()["root_packages"]:
        if (ROOT / package).is_dir():
            shutil.copytree(ROOT / package, tree / package, ignore=shutil.ignore_patterns("__pycache__"))
    return tree


def _lint(tree: Path) -> subprocess.CompletedProcess[str]:
    lint = Path(sys.executable).parent / "lint-imports"
    env = {**os.environ, "PYTHONPATH": str(tree)}
    return subprocess.run(
        [str(lint), "--no-cache"],
        cwd=tree,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )


# (file, line added): each one a way for the Pi's code to reach server code or bumble.
VIOLATIONS = {
    "bumble through the emulation package": ("edge_agent/agent.py", "import edge_agent.emulation.link"),
    "the demo devices at module level": ("edge_agent/uplink.py", "from edge_agent.emulation.demo import DEMO_DEVICES"),
    "bumble lazily in a function": ("edge_agent/ble/session.py", "def _later():\n    import bumble.device"),
    "server code from rpm_core": ("rpm_core/topics.py", "import ingest.opener"),
    "a server library": ("edge_agent/outbox/store.py", "import pandas"),
    "a module added tomorrow": ("edge_agent/added_tomorrow.py", "import store.readings"),
    "the CLI (which reaches every server package)": ("edge_agent/commands.py", "import vigil_cli.main"),
}


def test_the_unchanged_tree_keeps_the_contract(tmp_path: Path) -> None:
    result = _lint(_tree(tmp_path))
    assert result.returncode == 0, result.stdout[-2000:]
    assert f"{CONTRACT} KEPT" in result.stdout


@pytest.mark.parametrize("violation", VIOLATIONS, ids=list(VIOLATIONS))
def test_the_contract_breaks_on_each_way_to_server_code_or_bumble(tmp_path: Path, violation: str) -> None:
    tree = _tree(tmp_path)
    path, line = VIOLATIONS[violation]
    module = tree / path
    text = module.read_text() if module.exists() else '"""Added by the test."""\n'
    module.write_text(text + f"\n{line}  # noqa\n")
    result = _lint(tree)
    assert result.returncode != 0, result.stdout[-2000:]
    assert f"{CONTRACT} BROKEN" in result.stdout


# `vigil edge ...` through the console script's entry point, as the systemd unit runs the agent.
_CLI_PROBE = textwrap.dedent(
    """
    import json, sys
    from vigil_cli.main import main

    sys.argv = ["vigil", "edge", "decode", "2a37", "0648"]
    try:
        main()
    except SystemExit as exc:
        assert not exc.code, exc.code
    print(json.dumps({"modules": sorted(sys.modules), "skipped": []}))
    """
)


def test_vigil_edge_through_the_console_script_imports_no_server_group() -> None:
    modules = _loaded(_CLI_PROBE)["modules"]
    assert "edge_agent.cli" in modules
    # vigil_cli.main itself is the entry point: it is loaded, but no other group is imported.
    assert [m for m in _forbidden(modules) if m not in ("vigil_cli", "vigil_cli.main")] == []

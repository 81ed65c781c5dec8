"""Install what a Pi installs (the distribution with only its ``edge`` extra) into a new venv in a
temporary directory, then check it as a Pi would run it. Prints one JSON object; exit status 1 when
a check fails.

Checks, with that venv's Python, from a directory outside the source tree:

* ``vigil edge --help`` exits 0 and lists ``run``;
* importing every module of ``rpm_core`` and ``edge_agent`` but ``edge_agent.emulation``, and the
  ``--help`` of each ``vigil edge`` command (its own app), loads no server package and no bumble
  (the same probe as ``tests/test_pi_safe.py``, which runs it in the suite's own venv);
* none of the server extras' libraries nor bumble is installed at all;
* ``vigil edge run --help`` through the ``vigil`` console script (``vigil_cli.main``, the unit's
  ``ExecStart``): which server modules that loads besides the launcher itself is reported as
  ``vigil_cli_loads`` and fails the check when not empty (it mounts every command group, and a
  group whose extra is missing is dropped only after its imports up to the missing library ran).

It installs from PyPI (or pip's cache): about half a minute here. Not part of the test suite.
Run: ``.venv/bin/python scripts/pi_install_check.py``
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import venv
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.test_pi_safe import _PROBE, FORBIDDEN_ROOTS  # noqa: E402 - the suite's own probe

NOT_INSTALLED = ("bumble", "psycopg", "psycopg_pool", "fastapi", "uvicorn", "pandas", "sklearn", "prometheus_client")
_VIA_CLI = """
import json, sys
from vigil_cli.main import build_app
try:
    build_app()(["edge", "run", "--help"], prog_name="vigil")
except SystemExit:
    pass
print(json.dumps({"modules": sorted(sys.modules)}))
"""


def _source_copy(into: Path) -> Path:
    """The sources a wheel is built from, without the tests or this tree's build leftovers."""
    src = into / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    packages = ("rpm_core", "edge_agent", "broker_config", "store", "ingest", "alerts", "consult")
    for package in (*packages, "clinician_api", "vigil_cli", "provisioning"):
        if (ROOT / package).is_dir():
            shutil.copytree(ROOT / package, src / package, ignore=shutil.ignore_patterns("__pycache__"))
    return src


def _run(cmd: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, check=False, timeout=900)  # noqa: S603 - our own venv's programs


def _modules(python: Path, probe: str, cwd: Path) -> list[str]:
    out = _run([str(python), "-c", probe], cwd)
    if out.returncode != 0:
        raise RuntimeError(f"probe failed: {out.stderr[-2000:]}")
    modules: list[str] = json.loads(out.stdout.strip().splitlines()[-1])["modules"]
    return modules


def _forbidden(modules: list[str]) -> list[str]:
    return [m for m in modules if any(m == root or m.startswith(root + ".") for root in FORBIDDEN_ROOTS)]


def check(work: Path) -> dict[str, Any]:
    src = _source_copy(work)
    env_dir = work / "venv"
    venv.create(env_dir, with_pip=True)
    python, vigil = env_dir / "bin" / "python", env_dir / "bin" / "vigil"
    install = _run([str(python), "-m", "pip", "install", "--quiet", f"{src}[edge]"], work)
    if install.returncode != 0:
        return {"ok": False, "install": install.stderr[-2000:]}
    helped = _run([str(vigil), "edge", "--help"], work)
    missing = "import importlib.util as u; print(','.join(n for n in {names!r} if u.find_spec(n) is not None))"
    present = _run([str(python), "-c", missing.format(names=NOT_INSTALLED)], work).stdout.strip()
    edge = _forbidden(_modules(python, _PROBE, work))
    launcher = {"vigil_cli", "vigil_cli.main"}  # the console script itself
    via_cli = [m for m in _forbidden(_modules(python, _VIA_CLI, work)) if m not in launcher]
    result = {
        "vigil_edge_help_exit": helped.returncode,
        "vigil_edge_help_lists_run": " run " in helped.stdout,
        "server_libraries_installed": [n for n in present.split(",") if n],
        "edge_agent_loads": edge,
        "vigil_cli_loads": via_cli,
    }
    result["ok"] = (
        helped.returncode == 0
        and bool(result["vigil_edge_help_lists_run"])
        and not result["server_libraries_installed"]
        and not edge
        and not via_cli
    )
    return result


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="vigil-pi-") as tmp:
        result = check(Path(tmp))
    print(json.dumps(result))
    sys.exit(0 if result["ok"] else 1)


if __name__ == "__main__":
    main()

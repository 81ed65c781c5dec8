"""``vigil``'s command groups: a broken group fails every command loudly; a missing extra only hides its group.

Broken groups are temporary modules on ``sys.path`` (in process, and through the real ``main`` in a
subprocess). The edge-only Pi is a subprocess whose import system refuses every third-party module
of the other extras, as a machine without them installed does: ``vigil edge`` still works there.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap
from importlib.metadata import distribution, packages_distributions
from pathlib import Path

import pytest
import typer
from packaging.requirements import Requirement

from edge_agent.config_file import write_config
from vigil_cli.main import GROUPS, OPTIONAL_MODULES, BrokenCommandGroup, build_app

EDGE_MODULES = frozenset({"bleak", "bleak_retry_connector", "paho"})


def group_names(app: typer.Typer) -> set[str]:
    """Mounted groups, and groups with nothing but a callback (``demo``) mounted as one command."""
    return {g.name for g in app.registered_groups if g.name} | {c.name for c in app.registered_commands if c.name}


def test_every_group_imports_with_every_extra_installed() -> None:
    assert group_names(build_app()) == {name for name, _, _ in GROUPS}


def test_optional_modules_are_those_of_the_extras() -> None:
    """Each top-level module that the extras' distributions install is known as optional (an extra added
    to pyproject.toml without its module here would turn "not installed" into "broken")."""
    modules_of = _modules_of()
    checked = 0
    for requirement in distribution("vigil-rpm").requires or []:
        extra = re.search(r'extra == "([^"]+)"', requirement)
        if extra is None or extra.group(1) in ("dev", "bench"):
            continue  # tools for developers and benchmarks: no command of the CLI imports them
        dist = _norm(Requirement(requirement).name)
        modules = {m for m in modules_of.get(dist, set()) if not m.startswith("_")}
        assert modules, f"{dist} (extra {extra.group(1)}) is not installed in the test environment"
        assert modules <= OPTIONAL_MODULES, (dist, modules - OPTIONAL_MODULES)
        checked += 1
    assert checked >= 15
    assert EDGE_MODULES <= OPTIONAL_MODULES


BROKEN = {
    "raises": ('raise RuntimeError("boom at import")\n', RuntimeError),
    "syntax": ("def app(:\n", SyntaxError),
    "our_name": ("from store.agents import no_such_function\n", ImportError),
    "our_module": ("import provisioning.no_such_module\n", ModuleNotFoundError),
    "unknown_third_party": ("import vigil_test_not_installed_anywhere\n", ModuleNotFoundError),
    "extra_submodule": ("import psycopg.no_such_submodule\n", ModuleNotFoundError),
    "no_app": ("x = 1\n", TypeError),
    "not_typer": ("app = object()\n", TypeError),
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_a_broken_group_fails_loudly(case: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    source, error = BROKEN[case]
    module = f"vigil_test_group_{case}"
    (tmp_path / f"{module}.py").write_text(source)
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(BrokenCommandGroup) as caught:
        build_app((*GROUPS, ("broken", module, "A broken group.")))
    assert (caught.value.name, caught.value.module) == ("broken", module)
    assert isinstance(caught.value.error, error)
    assert f"command group 'broken' ({module}) is broken" in str(caught.value)


def test_a_phantom_group_fails_loudly() -> None:
    with pytest.raises(BrokenCommandGroup) as caught:
        build_app((("notify", "consult.no_such_cli_module", "Not written yet."),))
    assert isinstance(caught.value.error, ModuleNotFoundError)


def test_a_missing_extra_only_hides_its_group(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # What `import segno` raises where the server extra is not installed.
    (tmp_path / "vigil_test_group_extra.py").write_text(
        "raise ModuleNotFoundError(\"No module named 'segno'\", name='segno')\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    app = build_app((GROUPS[1], ("extra", "vigil_test_group_extra", "Needs the server extra.")))
    assert group_names(app) == {"edge"}


def run_vigil(*args: str, prelude: str = "", cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    script = prelude + "\nimport sys\nfrom vigil_cli.main import main\nsys.argv = ['vigil', *sys.argv[1:]]\nmain()\n"
    return subprocess.run(
        [sys.executable, "-c", script, *args], capture_output=True, text=True, timeout=120, check=False, cwd=cwd
    )


def test_main_prints_the_broken_group_and_exits_1_for_any_command(tmp_path: Path) -> None:
    (tmp_path / "vigil_test_group_boom.py").write_text('raise RuntimeError("boom at import")\n')
    prelude = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(tmp_path)!r})
        import vigil_cli.main as m
        m.GROUPS = (*m.GROUPS, ("boom", "vigil_test_group_boom", "A broken group."))
    """)
    # Every command that mounts the broken group fails loudly: the whole help, and the group itself.
    for args in (["--help"], ["boom", "--help"]):
        done = run_vigil(*args, prelude=prelude)
        assert done.returncode == 1, done
        assert "Traceback" in done.stderr
        assert "RuntimeError: boom at import" in done.stderr
        assert done.stderr.rstrip().splitlines()[-1] == (
            "error: command group 'boom' (vigil_test_group_boom) is broken: RuntimeError: boom at import"
        )
        assert "Usage" not in done.stdout
    # `vigil edge ...` mounts only its own group, so an unrelated broken group cannot stop the agent.
    done = run_vigil("edge", "--help", prelude=prelude)
    assert done.returncode == 0, done.stderr
    assert "boom" not in done.stderr


def _modules_of() -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for module, dists in packages_distributions().items():
        for dist in dists:
            out.setdefault(_norm(dist), set()).add(module)
    return out


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def installed_with(extras: set[str]) -> set[str]:
    """Top-level modules a ``pip install vigil-rpm[EXTRAS]`` would have: the distributions its core and
    those extras require, transitively (their own extras and other platforms' markers left out)."""
    seen: set[str] = set()
    todo = [("vigil-rpm", frozenset(extras))]
    while todo:
        name, wanted = todo.pop()
        if _norm(name) in seen:
            continue
        seen.add(_norm(name))
        for text in distribution(name).requires or []:
            req = Requirement(text)
            envs = [{"extra": e} for e in wanted] or [{"extra": ""}]
            if req.marker is None or any(req.marker.evaluate(env) for env in envs):
                todo.append((req.name, frozenset(req.extras)))
    modules_of = _modules_of()
    return {m for dist in seen for m in modules_of.get(dist, set())}


# Each subprocess gets a meta path that finds nothing of the blocked modules, exactly as an interpreter
# without them installed (importlib.util.find_spec answers None; `import` raises ModuleNotFoundError).
EDGE_ONLY = """
import json, sys, atexit
BLOCKED = frozenset({blocked!r})
refused = set()

class NotInstalled:
    def __init__(self, finder):
        self.finder = finder

    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in BLOCKED:
            refused.add(name.partition(".")[0])
            return None
        return self.finder.find_spec(name, path, target)

    def __getattr__(self, attr):
        return getattr(self.finder, attr)

sys.meta_path[:] = [NotInstalled(f) for f in sys.meta_path]
atexit.register(lambda: print("REFUSED " + json.dumps(sorted(refused)), file=sys.stderr))
"""


@pytest.mark.parametrize(
    ("args", "expect"),
    [
        (["--help"], "edge"),
        (["edge", "--help"], "enroll"),
        (["edge", "decode", "2a37", "0648"], '"value": 72.0'),
    ],
)
def test_an_edge_only_install_runs_vigil_edge(args: list[str], expect: str) -> None:
    edge_install = installed_with({"edge"})
    assert edge_install >= EDGE_MODULES
    blocked = sorted(OPTIONAL_MODULES - edge_install)
    assert {"psycopg", "psycopg_pool", "fastapi", "bumble", "pandas", "sklearn"} <= set(blocked)
    done = run_vigil(*args, prelude=EDGE_ONLY.format(blocked=blocked))
    assert done.returncode == 0, done.stderr
    assert expect in done.stdout
    refused = json.loads(done.stderr.rsplit("REFUSED ", 1)[1])
    assert not set(refused) & EDGE_MODULES
    # `vigil edge ...` imports only the edge group; the whole help tries every group and hides those
    # whose extra is missing.
    assert ("psycopg" in refused) == (args == ["--help"]), refused
    if args == ["--help"]:
        for server_group in ("db", "agents", "broker", "ingest", "alerts", "notify", "api", "demo"):
            assert not re.search(rf"^\W*{server_group}\b", done.stdout, re.MULTILINE), done.stdout


@pytest.mark.parametrize("group", ["demo", "ingest"])
def test_a_group_with_only_its_callback_is_one_command(group: str) -> None:
    # `vigil demo --help` used to promise `COMMAND [ARGS]...` that do not exist.
    done = subprocess.run(
        [sys.executable, "-m", "vigil_cli", group, "--help"], capture_output=True, text=True, check=True
    )
    assert f" {group} [OPTIONS]" in done.stdout, done.stdout
    assert "COMMAND" not in done.stdout


def test_the_demo_options_reach_the_demo_when_it_is_the_only_group_mounted() -> None:
    # `vigil demo ...` mounts only the demo group: typer must not run it as the program itself.
    done = subprocess.run(
        [sys.executable, "-m", "vigil_cli", "demo", "--duration", "0"], capture_output=True, text=True, check=False
    )
    assert done.returncode == 2
    assert "--duration" in done.stderr, done.stderr
    assert "extra argument" not in done.stderr, done.stderr


# What the agent process holds once `vigil edge run` has started it (printed at exit).
LOADED_AT_EXIT = """
import atexit, json, sys
atexit.register(lambda: print("LOADED " + json.dumps(sorted(sys.modules)), file=sys.stderr))
"""


def test_vigil_edge_run_starts_the_agent_without_typer_or_pydantic(tmp_path: Path) -> None:
    # An unenrolled config stops the agent after its settings are built and its modules imported.
    config = tmp_path / "agent.toml"
    write_config(config, {"time_zone": "UTC"}, [])
    done = run_vigil("edge", "run", "--config", str(config), "--log-level", "info", prelude=LOADED_AT_EXIT)
    assert done.returncode == 2, done.stderr
    assert "error: this agent is not enrolled: vigil edge enroll --bundle FILE" in done.stderr
    loaded = set(json.loads(done.stderr.rsplit("LOADED ", 1)[1]))
    assert {"edge_agent.run", "edge_agent.agent", "edge_agent.settings"} <= loaded
    top = {m.partition(".")[0] for m in loaded}
    assert not top & {"typer", "click", "cwt", "cryptography"}
    assert "edge_agent.cli" not in loaded
    # The agent's contract types and settings are plain dataclasses (docs/performance.md, "Edge agent").
    assert not top & {"pydantic", "pydantic_core", "pydantic_settings"}
    assert "rpm_core.settings" not in loaded
    # The envelope, the outbox and the key files go through libsodium (docs/performance.md).
    assert {"nacl.bindings", "rpm_core.envelope", "rpm_core.keys", "edge_agent.outbox.codec"} <= loaded


@pytest.mark.parametrize("args", [["--help"], ["--config"], ["--no-such-option"]])
def test_vigil_edge_run_leaves_help_and_bad_options_to_typer(args: list[str]) -> None:
    done = run_vigil("edge", "run", *args)
    if args == ["--help"]:
        assert done.returncode == 0, done.stderr
        assert "--emulated-hci" in done.stdout
    else:
        assert done.returncode == 2, done.stderr
        assert "Error" in done.stderr  # typer's box
        assert "not enrolled" not in done.stderr


def test_vigil_edge_run_without_the_edge_extra_says_there_is_no_edge_command() -> None:
    done = run_vigil("edge", "run", prelude=EDGE_ONLY.format(blocked=["bleak"]))
    assert done.returncode == 2, done.stderr
    assert "No such command 'edge'" in done.stderr

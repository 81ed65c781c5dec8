"""``vigil edge install --root``: files, modes, the hardened unit, idempotence, uninstall."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from edge_agent.cli import app
from edge_agent.install import InstallPlan, install, render_unit, uninstall

VIGIL = Path(sys.executable).parent / "vigil"  # exists here, so systemd-analyze can check ExecStart


def plan(root: Path) -> InstallPlan:
    return InstallPlan(root=root, exec_path=VIGIL)


def image(root: Path) -> Path:
    """A minimal SD-card image root with account databases."""
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/bash\n")
    (root / "etc" / "group").write_text("root:x:0:\n")
    return root


def mode(path: Path) -> int:
    return path.stat().st_mode & 0o777


def test_install_into_a_root(tmp_path: Path) -> None:
    root = tmp_path / "img"
    p = plan(root)
    actions = install(p)
    assert actions
    unit = root / "etc/systemd/system/vigil-edge.service"
    assert mode(unit) == 0o644
    link = root / "etc/systemd/system/multi-user.target.wants/vigil-edge.service"
    assert link.is_symlink()
    assert str(link.readlink()) == "/etc/systemd/system/vigil-edge.service"
    for directory in ("etc/vigil/edge", "var/lib/vigil-edge"):
        assert mode(root / directory) == 0o700
    sysusers = (root / "usr/lib/sysusers.d/vigil-edge.conf").read_text()
    assert "u vigil-edge" in sysusers
    assert "m vigil-edge bluetooth" in sysusers
    assert (
        "d /var/lib/vigil-edge 0700 vigil-edge vigil-edge" in (root / "usr/lib/tmpfiles.d/vigil-edge.conf").read_text()
    )
    assert install(p) == []  # idempotent


def test_unit_is_hardened() -> None:
    text = render_unit(plan(Path("/")))
    lines = set(text.splitlines())
    for setting in (
        "User=vigil-edge",
        "SupplementaryGroups=bluetooth",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "PrivateTmp=yes",
        "ProtectHome=yes",
        "ReadWritePaths=/var/lib/vigil-edge",
        "StateDirectory=vigil-edge",
        "Restart=always",
        "CapabilityBoundingSet=",
        "Environment=VIGIL_CONFIG=/etc/vigil/edge/agent.toml",
        "ConditionPathExists=/etc/vigil/edge/agent.toml",
        f"ExecStart={VIGIL} edge run",
        "WantedBy=multi-user.target",
    ):
        assert setting in lines, setting


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed")
def test_systemd_analyze_verifies_the_unit(tmp_path: Path) -> None:
    p = plan(tmp_path / "img")
    install(p)
    result = subprocess.run(["systemd-analyze", "verify", str(p.unit)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""


@pytest.mark.skipif(shutil.which("systemd-sysusers") is None, reason="systemd-sysusers not installed")
def test_user_is_added_to_an_image_and_owns_the_directories(tmp_path: Path) -> None:
    root = image(tmp_path / "img")
    install(plan(root))
    passwd = (root / "etc/passwd").read_text()
    entry = next(line for line in passwd.splitlines() if line.startswith("vigil-edge:"))
    uid, gid = int(entry.split(":")[2]), int(entry.split(":")[3])
    assert entry.endswith(":/var/lib/vigil-edge:/usr/sbin/nologin")
    assert "bluetooth:" in (root / "etc/group").read_text()
    assert "vigil-edge" in next(
        line for line in (root / "etc/group").read_text().splitlines() if line.startswith("bluetooth:")
    )
    state = root / "var/lib/vigil-edge"
    if os.geteuid() == 0:  # only root can give files away
        assert (state.stat().st_uid, state.stat().st_gid) == (uid, gid)
    assert install(plan(root)) == []


def test_uninstall_keeps_data_unless_purged(tmp_path: Path) -> None:
    root = tmp_path / "img"
    p = plan(root)
    install(p)
    (root / "var/lib/vigil-edge/outbox.db").write_bytes(b"undelivered")
    removed = uninstall(p)
    assert not p.unit.exists()
    assert not p.wants_link.is_symlink()
    assert len(removed) == 4
    assert (root / "var/lib/vigil-edge/outbox.db").exists()
    uninstall(p, purge=True)
    assert not (root / "var/lib/vigil-edge").exists()
    assert not (root / "etc/vigil/edge").exists()


def test_cli_install_and_uninstall(tmp_path: Path) -> None:
    runner = CliRunner()
    root = tmp_path / "img"
    first = runner.invoke(app, ["install", "--root", str(root), "--exec", str(VIGIL)])
    assert first.exit_code == 0, first.output
    assert "wrote" in first.stdout
    again = runner.invoke(app, ["install", "--root", str(root), "--exec", str(VIGIL)])
    assert "nothing changed" in again.stdout
    gone = runner.invoke(app, ["uninstall", "--root", str(root)])
    assert gone.exit_code == 0
    assert "removed" in gone.stdout
    bad = runner.invoke(app, ["install", "--root", str(root), "--exec", "relative/vigil"])
    assert bad.exit_code == 1

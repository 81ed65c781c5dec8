"""Issue 10 item 11: directories that hold secrets are 0700, private files are written without
following anyone's symlinks.

Through the real commands: ``vigil agents keys init`` (server key generations and the CA) and
``vigil edge enroll`` (the agent's keys) on a fresh machine with the ordinary umask 022, and again
over directories someone left 0755 (tightened, with a warning). The attacks: a symlink planted
where the key writer puts its temporary file, and one planted at the key's own path, each pointing
at a victim file. Neither may be followed: the victim keeps its content, and the key lands in a
regular 0600 file.
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from edge_agent.cli import app as edge_app
from rpm_core.enrollment import BrokerEndpoint, EnrollmentBundle, ServerKeyInfo, new_token
from rpm_core.ids import agent_id, org_id
from rpm_core.keys import ServerKey
from rpm_core.keystore import write_private
from vigil_cli.agents import app as agents_app

VICTIM_TEXT = "not yours to overwrite\n"


def mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


@pytest.fixture(autouse=True)
def _ordinary_umask() -> Iterator[None]:
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


def keys_init(key_dir: Path) -> str:
    result = CliRunner().invoke(agents_app, ["keys", "init"], env={"VIGIL_KEY_DIR": str(key_dir)})
    assert result.exit_code == 0, (result.output, result.exception)
    return result.output


def bundle_file(path: Path) -> Path:
    bundle = EnrollmentBundle(
        org=org_id("clinic-1"),
        agent_id=agent_id("agt-perm-1"),
        broker=BrokerEndpoint(host="127.0.0.1", port=8883, server_name="localhost", ca_pem="CA PEM"),
        mqtt_username="agt-perm-1",
        mqtt_password="mqtt-secret",  # type: ignore[arg-type]
        enrollment_token=new_token(),  # type: ignore[arg-type]
        server_keys=(ServerKeyInfo.of(ServerKey.generate().public()),),
        expires_at=datetime.now(UTC) + timedelta(days=1),
    )
    path.write_text(bundle.to_json())
    return path


def enroll(tmp_path: Path, directory: Path, state: Path) -> str:
    args = ["enroll", "--bundle", str(bundle_file(tmp_path / "bundle.json")), "--dir", str(directory)]
    result = CliRunner().invoke(edge_app, [*args, "--state-dir", str(state), "--time-zone", "UTC"])
    assert result.exit_code == 0, (result.output, result.exception)
    return result.output


def test_keys_init_creates_every_key_directory_0700(tmp_path: Path) -> None:
    key_dir = tmp_path / "srv" / "keys"
    keys_init(key_dir)
    for directory in (key_dir, key_dir / "ca", key_dir / "server", key_dir / "server" / "0001"):
        assert mode(directory) == 0o700, directory
    generation = key_dir / "server" / "0001"
    for secret in (key_dir / "ca" / "ca.key", generation / "kex.pem", generation / "sign.pem"):
        assert mode(secret) == 0o600, secret
    assert mode(tmp_path / "srv") == 0o755  # not a secret directory: left alone


def test_keys_init_tightens_loose_key_directories_and_says_so(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    key_dir = tmp_path / "keys"
    (key_dir / "ca").mkdir(parents=True, mode=0o755)
    key_dir.chmod(0o755)
    (key_dir / "ca").chmod(0o777)
    keys_init(key_dir)  # `vigil` sends warnings to stderr (logging.basicConfig in vigil_cli.main)
    assert (mode(key_dir), mode(key_dir / "ca"), mode(key_dir / "server")) == (0o700, 0o700, 0o700)
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert f"tightened {key_dir} from 0755 to 0700 (it holds secrets)" in warnings
    assert f"tightened {key_dir / 'ca'} from 0777 to 0700 (it holds secrets)" in warnings


def test_enroll_creates_and_tightens_the_agents_secret_directories(tmp_path: Path) -> None:
    directory, state = tmp_path / "etc" / "vigil" / "edge", tmp_path / "var" / "vigil-edge"
    (directory / "keys").mkdir(parents=True, mode=0o755)
    (directory / "keys").chmod(0o755)  # left loose by a hand-made setup
    enroll(tmp_path, directory, state)
    for path in (directory, directory / "keys", state):
        assert mode(path) == 0o700, path
    for name in ("credentials.json", "keys/sign.pem", "keys/kex.pem", "keys/outbox.key"):
        assert mode(directory / name) == 0o600, name
    assert mode(state / "outbox.db") == 0o600


def test_a_symlink_planted_at_the_temporary_path_is_not_followed(tmp_path: Path) -> None:
    """``vigil agents keys init`` writes the CA key; the attacker planted ``ca.key.tmp`` -> victim."""
    key_dir = tmp_path / "keys"
    (key_dir / "ca").mkdir(parents=True)
    victim = tmp_path / "victim.txt"
    victim.write_text(VICTIM_TEXT)
    victim.chmod(0o644)
    (key_dir / "ca" / "ca.key.tmp").symlink_to(victim)
    keys_init(key_dir)
    assert victim.read_text() == VICTIM_TEXT  # the CA key did not land in the attacker's file
    assert mode(victim) == 0o644
    key = key_dir / "ca" / "ca.key"
    assert stat.S_ISREG(key.lstat().st_mode)
    assert mode(key) == 0o600
    assert b"PRIVATE KEY" in key.read_bytes()


def test_a_symlink_planted_at_the_target_is_replaced_not_followed(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    victim = tmp_path / "victim.txt"
    victim.write_text(VICTIM_TEXT)
    target = shared / "bundle.json"
    target.symlink_to(victim)
    write_private(target, json.dumps({"secret": "s3cret"}).encode())
    assert victim.read_text() == VICTIM_TEXT
    assert stat.S_ISREG(target.lstat().st_mode)
    assert mode(target) == 0o600
    assert json.loads(target.read_text()) == {"secret": "s3cret"}


def test_private_files_are_created_0600_from_the_start_and_leave_no_temporary(tmp_path: Path) -> None:
    seen: list[int] = []
    real_write = os.write

    def spy(fd: int, data: bytes | memoryview) -> int:  # observes the file's mode while it is written
        seen.append(stat.S_IMODE(os.fstat(fd).st_mode))
        return real_write(fd, data)

    target = tmp_path / "new" / "secret.key"
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(os, "write", spy)
        write_private(target, b"k" * 64)
    assert seen
    assert set(seen) == {0o600}
    assert target.read_bytes() == b"k" * 64
    assert mode(target.parent) == 0o700
    assert sorted(p.name for p in target.parent.iterdir()) == ["secret.key"]

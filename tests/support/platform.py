"""A platform set up the way docs/provisioning.md says, for the security tests.

``vigil agents keys init | org create | patient create`` and ``vigil broker render`` run through the
real command line (typer's CliRunner, the same entry point as the console script) against a real
database; Mosquitto runs the configuration exactly as rendered; ``vigil agents create`` makes each
agent's enrollment bundle, from which :meth:`RenderedPlatform.sim_agent` builds a client holding
nothing but that agent's own credentials (the attacker of the tests, or its victim). Ingest
settings point at the rendered accounts (``vigil-ingest-N``, passwords in the key directory).
"""

from __future__ import annotations

import getpass
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from click.testing import Result
from typer.testing import CliRunner

from broker_config.ca import load_ca
from broker_config.control import DynsecControl
from broker_config.mosquitto import MosquittoSpec
from broker_config.render import BrokerLayout
from ingest.settings import IngestSettings
from rpm_core.enrollment import EnrollmentBundle
from rpm_core.keys import AgentKeys
from rpm_core.keystore import load_server_keys
from tests.support.agents import SimAgent
from vigil_cli.main import build_app
from vigil_testkit.mosquitto import MosquittoProcess
from vigil_testkit.net import free_port

ORG, PATIENT = "clinic-1", "p1"
HOST = "localhost"  # in the rendered certificate (broker_server_names' default)


@contextmanager
def reachable_dir() -> Iterator[Path]:
    """A directory the ``mosquitto`` user can enter (/var/tmp/vigil-XXXX, 0711; pytest's tmp dirs are
    0700 root): for a broker started as root that drops privileges. Removed afterwards."""
    path = Path(tempfile.mkdtemp(prefix="vigil-", dir="/var/tmp"))
    path.chmod(0o711)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def wait_for(cond: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while not (value := cond()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)
    return value


@dataclass
class RenderedPlatform:
    db: str
    workdir: Path
    env: dict[str, str]
    key_dir: Path
    layout: BrokerLayout
    port: int
    broker: MosquittoProcess
    agents: list[SimAgent] = field(default_factory=list)

    def vigil(self, *args: str, ok: bool = True) -> Result:
        result = CliRunner().invoke(build_app(), list(args), env=self.env)
        if ok:
            assert result.exit_code == 0, (args, result.output, result.exception)
        return result

    def create_agent(self, agent: str, *, org: str = ORG, patient: str = PATIENT) -> EnrollmentBundle:
        """``vigil agents create`` (the broker runs: its account goes through the control API)."""
        out = self.workdir / f"{agent}.bundle.json"
        self.vigil("agents", "create", "--org", org, "--patient", patient, "--agent", agent, "--out", str(out))
        return EnrollmentBundle.read(out)

    def sim_agent(self, bundle: EnrollmentBundle) -> SimAgent:
        """A client with exactly the bundle's credentials (and keys it generates, as an enrolling Pi does)."""
        broker = SimpleNamespace(host=HOST, port=self.port, layout=self.layout, ca=load_ca(self.key_dir))
        server = load_server_keys(self.key_dir).current
        sim = SimAgent(
            bundle.org,
            bundle.agent_id,
            bundle.mqtt_password.get_secret_value(),
            bundle.enrollment_token.get_secret_value(),
            AgentKeys.generate(),
            server,
            broker,  # type: ignore[arg-type]
        )
        self.agents.append(sim)
        return sim

    def ingest_password(self, username: str = "vigil-ingest-1") -> str:
        return (self.key_dir / "mqtt" / f"{username}.password").read_text().strip()

    def admin_password(self) -> str:
        return (self.key_dir / "mqtt" / "vigil-admin.password").read_text().strip()

    def control(self) -> DynsecControl:
        """The broker's control API as vigil-admin (to look at, or tamper with, what it holds)."""
        return DynsecControl(host=HOST, port=self.port, ca_file=self.layout.ca, password=self.admin_password())

    def ingest_settings(self, **overrides: Any) -> IngestSettings:
        values: dict[str, Any] = {
            "database_url": self.db,
            "key_dir": self.key_dir,
            "mqtt_host": HOST,
            "mqtt_port": self.port,
            "mqtt_ca_file": self.layout.ca,
            "metrics_port": 0,
            "batch_max_wait_ms": 20,
        }
        values.update(overrides)
        return IngestSettings(**values)

    def stop(self) -> None:
        for sim in self.agents:
            sim.close()
        self.broker.stop()


def start_platform(
    db: str,
    workdir: Path,
    *,
    broker_dir: Path | None = None,
    broker_user: str | None = None,
    settings: dict[str, str] | None = None,
    render: bool = True,
    start: bool = True,
) -> RenderedPlatform:
    """Provision with the real CLI, ``render``, and ``start`` Mosquitto on the rendered file (as is:
    started as root, it drops to ``broker_user``, default the current user)."""
    port = free_port()
    layout = BrokerLayout(broker_dir or workdir / "broker")
    env = {
        "VIGIL_DATABASE_URL": db,
        "VIGIL_KEY_DIR": str(workdir / "keys"),
        "VIGIL_BROKER_DIR": str(layout.out_dir),
        "VIGIL_BROKER_HOST": HOST,
        "VIGIL_BROKER_PORT": str(port),
        "VIGIL_BROKER_USER": broker_user or getpass.getuser(),
        **(settings or {}),
    }
    spec = MosquittoSpec(data_dir=layout.data_dir, port=port, allow_anonymous=True)  # host and port only
    workdir.mkdir(parents=True, exist_ok=True)
    platform = RenderedPlatform(
        db,
        workdir,
        env,
        workdir / "keys",
        layout,
        port,
        MosquittoProcess.rendered(spec, layout.conf, workdir, ca_file=layout.ca),
    )
    platform.vigil("agents", "keys", "init")
    platform.vigil("agents", "org", "create", ORG, "--name", "Clinic")
    platform.vigil("agents", "patient", "create", PATIENT, "--org", ORG, "--name", "Test Patient")
    if not render:
        return platform
    platform.vigil("broker", "render")
    if start:
        platform.broker.start()
    return platform

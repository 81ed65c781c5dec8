"""A real Mosquitto per test, configured by ``broker_config`` and started on a free port.

``MosquittoProcess`` can be stopped, killed and restarted on the same port and data directory,
which the broker fault tests need. Tests that need TLS and access control pass their own spec, or
run a configuration ``vigil broker render`` wrote (:meth:`MosquittoProcess.rendered`).
"""

from __future__ import annotations

import getpass
import os
import signal
import subprocess
from dataclasses import replace
from pathlib import Path

from broker_config.mosquitto import MosquittoSpec, find_mosquitto, write_mosquitto
from vigil_testkit.net import free_port, wait_for_port

mosquitto_binary = find_mosquitto


def plain_spec(workdir: Path) -> MosquittoSpec:
    """Anonymous plain-TCP broker on a free port: for tests that exercise MQTT but not auth."""
    return MosquittoSpec(data_dir=workdir / "data", port=free_port(), allow_anonymous=True, user=getpass.getuser())


class MosquittoProcess:
    def __init__(self, spec: MosquittoSpec, workdir: Path, *, conf: Path | None = None) -> None:
        """Write ``spec`` into ``workdir`` (as root: running as root, not as spec.user, so that the
        broker can use a pytest tmp dir), or with ``conf`` run that file as it is."""
        binary = mosquitto_binary()
        if binary is None:
            raise RuntimeError("mosquitto is not installed (apt-get install mosquitto)")
        self.binary = binary
        self.workdir = workdir
        if conf is None:
            self.spec = replace(spec, user=spec.user if os.geteuid() != 0 else getpass.getuser())
            self.conf = write_mosquitto(self.spec, workdir)
        else:
            self.spec, self.conf = spec, conf
        self.log_path = workdir / "mosquitto.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @classmethod
    def rendered(cls, spec: MosquittoSpec, conf: Path, log_dir: Path) -> MosquittoProcess:
        """The configuration ``vigil broker render`` wrote (``spec`` gives host and port), stdout/stderr to log_dir."""
        return cls(spec, log_dir, conf=conf)

    @property
    def host(self) -> str:
        return self.spec.bind_address

    @property
    def port(self) -> int:
        return self.spec.port

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self) -> None:
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen([self.binary, "-c", str(self.conf)], stdout=log, stderr=log)
        log.close()
        try:
            wait_for_port(self.host, self.port, timeout=10)
        except TimeoutError:
            self.stop()
            raise RuntimeError(f"mosquitto did not start: {self.log_path.read_text()[-2000:]}") from None

    def stop(self, timeout: float = 10) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def kill(self) -> None:
        """kill -9: no clean shutdown, no persistence save."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()
        self.proc = None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

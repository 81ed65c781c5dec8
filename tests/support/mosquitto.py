"""A real Mosquitto per test, configured by ``broker_config`` and started on a free port.

``MosquittoProcess`` can be stopped, killed and restarted on the same port and data directory,
which the broker fault tests need. Tests that need TLS and ACLs pass their own spec.
"""

from __future__ import annotations

import getpass
import os
import signal
import subprocess
from dataclasses import replace
from pathlib import Path

from broker_config.mosquitto import MosquittoSpec, find_mosquitto, write_mosquitto
from tests.support.net import free_port, wait_for_port

mosquitto_binary = find_mosquitto


def plain_spec(workdir: Path) -> MosquittoSpec:
    """Anonymous plain-TCP broker on a free port: for tests that exercise MQTT but not auth."""
    return MosquittoSpec(data_dir=workdir / "data", port=free_port(), allow_anonymous=True, user=getpass.getuser())


class MosquittoProcess:
    def __init__(self, spec: MosquittoSpec, workdir: Path) -> None:
        binary = mosquitto_binary()
        if binary is None:
            raise RuntimeError("mosquitto is not installed (apt-get install mosquitto)")
        self.binary = binary
        self.spec = replace(spec, user=spec.user if os.geteuid() != 0 else getpass.getuser())
        self.workdir = workdir
        self.conf = write_mosquitto(self.spec, workdir)
        self.log_path = workdir / "mosquitto.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def host(self) -> str:
        return self.spec.bind_address

    @property
    def port(self) -> int:
        return self.spec.port

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

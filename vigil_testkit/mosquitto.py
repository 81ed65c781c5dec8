"""A real Mosquitto per test, configured by ``broker_config`` and started on a free port.

``MosquittoProcess`` can be stopped, killed and restarted on the same port and data directory,
which the broker fault tests need. Tests that need TLS and access control pass their own spec, or
run a configuration ``vigil broker render`` wrote (:meth:`MosquittoProcess.rendered`).
"""

from __future__ import annotations

import getpass
import os
import signal
import socket
import ssl
import subprocess
import time
from dataclasses import replace
from pathlib import Path

from broker_config.mosquitto import MosquittoSpec, find_mosquitto, write_mosquitto
from vigil_testkit import procs
from vigil_testkit.net import free_port

# An MQTT v5 CONNECT (client id "ready", no credentials): every broker answers it with a CONNACK,
# accepted or not; the probe only needs that the broker speaks MQTT on the port.
_PROBE_CONNECT = bytes.fromhex("1012 0004 4d515454 05 02 003c 00 0005 7265616479".replace(" ", ""))
_CONNACK = 0x20

mosquitto_binary = find_mosquitto


def plain_spec(workdir: Path) -> MosquittoSpec:
    """Anonymous plain-TCP broker on a free port: for tests that exercise MQTT but not auth."""
    return MosquittoSpec(data_dir=workdir / "data", port=free_port(), allow_anonymous=True, user=getpass.getuser())


class MosquittoProcess:
    def __init__(
        self, spec: MosquittoSpec, workdir: Path, *, conf: Path | None = None, ca_file: Path | None = None
    ) -> None:
        """Write ``spec`` into ``workdir`` (as root: running as root, not as spec.user, so that the
        broker can use a pytest tmp dir), or with ``conf`` run that file as it is. ``ca_file``: the
        CA of a TLS listener ``spec`` does not describe (a rendered ``conf``), for the readiness probe."""
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
        self.ca_file = ca_file if ca_file is not None else (spec.tls.cafile if spec.tls is not None else None)
        self.log_path = workdir / "mosquitto.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @classmethod
    def rendered(cls, spec: MosquittoSpec, conf: Path, log_dir: Path, *, ca_file: Path) -> MosquittoProcess:
        """The configuration ``vigil broker render`` wrote (``spec`` gives host and port; its TLS
        listener's CA is ``ca_file``), stdout/stderr to log_dir."""
        return cls(spec, log_dir, conf=conf, ca_file=ca_file)

    @property
    def host(self) -> str:
        return self.spec.bind_address

    @property
    def port(self) -> int:
        return self.spec.port

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self, timeout: float = 20) -> None:
        """Start the broker and return once it answers MQTT (through TLS, verified, when it has TLS)."""
        log = self.log_path.open("ab")
        self.proc = procs.popen([self.binary, "-c", str(self.conf)], stdout=log, stderr=log)
        log.close()
        try:
            wait_for_mqtt(self.host, self.port, tls_context(self.ca_file), timeout=timeout, alive=self.proc)
        except (TimeoutError, RuntimeError) as exc:
            self.stop()
            raise RuntimeError(f"mosquitto did not start ({exc}): {self.log()[-2000:]}") from None

    def stop(self, timeout: float = 10) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                procs.kill_group(self.proc)
        self.proc = None

    def kill(self) -> None:
        """kill -9: no clean shutdown, no persistence save."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()
        self.proc = None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


# OpenSSL's X509_V_FLAG_NO_CHECK_TIME (the ssl module has no name for it).
_NO_CHECK_TIME = 0x200000


def tls_context(ca_file: Path | None) -> ssl.SSLContext | None:
    """The readiness probe's client context: it trusts only the broker's own CA (so another broker
    on the port does not count) but not the certificate's dates, so that a test may start a broker
    with an expired certificate on purpose. None for a plain listener."""
    if ca_file is None:
        return None
    ctx = ssl.create_default_context(cafile=str(ca_file))
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.verify_flags = ctx.verify_flags | _NO_CHECK_TIME
    return ctx


def mqtt_answers(host: str, port: int, ctx: ssl.SSLContext | None, *, server_name: str = "localhost") -> bool:
    """One attempt: does ``host:port`` complete a (verified) TLS handshake and answer CONNECT with CONNACK?"""
    try:
        with socket.create_connection((host, port), timeout=2) as raw:
            sock: socket.socket = ctx.wrap_socket(raw, server_hostname=server_name) if ctx is not None else raw
            with sock:
                sock.settimeout(2)
                sock.sendall(_PROBE_CONNECT)
                return sock.recv(1)[:1] == bytes([_CONNACK])
    except (OSError, ssl.SSLError):
        return False


def wait_for_mqtt(
    host: str,
    port: int,
    ctx: ssl.SSLContext | None,
    *,
    timeout: float = 20,
    alive: subprocess.Popen[bytes] | None = None,
    server_name: str = "localhost",
) -> None:
    """Until a broker on ``host:port`` accepts (TLS) connections and speaks MQTT.

    With ``ctx`` the handshake verifies the certificate against the test's CA, so another broker
    that happens to hold the port does not count; ``alive`` (our broker's process) must still run.
    """
    deadline = time.monotonic() + timeout
    while True:
        if alive is not None and alive.poll() is not None:
            raise RuntimeError(f"the broker exited with {alive.returncode}")
        if mqtt_answers(host, port, ctx, server_name=server_name):
            if alive is None or alive.poll() is None:
                return
            continue
        if time.monotonic() > deadline:
            raise TimeoutError(f"no MQTT broker answers on {host}:{port} after {timeout}s")
        time.sleep(0.05)

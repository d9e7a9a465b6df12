"""A private PostgreSQL server for tests and benchmarks: its own data directory and port on
loopback, password authentication, started as an unprivileged user (PostgreSQL refuses to
run as root: as root we use the ``postgres`` account the Debian package makes, else
``nobody``). Durability is traded for speed (fsync off): the data is thrown away.

Used by tests/store and tests/deploy (one server per pytest run, a database per test) and
by bench/; ``python -m tests.pgserver`` starts one by hand and prints its DSN.
"""

from __future__ import annotations

import atexit
import glob
import os
import pwd
import secrets
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.devstack.procs import free_port


def pg_bindir() -> Path | None:
    """The newest PostgreSQL server binaries installed (Debian keeps them out of PATH)."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"),
                   key=lambda p: int(Path(p).parent.parent.name) if
                   Path(p).parent.parent.name.isdigit() else 0)
    if found:
        return Path(found[-1]).parent
    which = shutil.which("pg_ctl")
    return Path(which).parent if which else None


class PgServer:
    def __init__(self, bindir: Path) -> None:
        self.bindir = bindir
        self.root = Path(tempfile.mkdtemp(prefix="gateway-pg-"))
        self.data = self.root / "data"
        self.port = free_port()
        self.password = secrets.token_urlsafe(18)
        self.user = "gateway"
        self.os_user: str | None = None
        if os.geteuid() == 0:
            try:
                pwd.getpwnam("postgres")
                self.os_user = "postgres"
            except KeyError:
                self.os_user = "nobody"
            pw = pwd.getpwnam(self.os_user)
            os.chown(self.root, pw.pw_uid, pw.pw_gid)
        self._counter = 0

    def _cmd(self, *args: str) -> list[str]:
        prefix = ["runuser", "-u", self.os_user, "--"] if self.os_user else []
        return [*prefix, *args]

    def _run(self, *args: str) -> None:
        proc = subprocess.run(self._cmd(*args), capture_output=True, text=True, timeout=120,
                              cwd=self.root, check=False)
        if proc.returncode != 0:
            raise RuntimeError(f"{args[0]} failed: {proc.stdout}\n{proc.stderr}")

    def dsn(self, database: str = "postgres") -> str:
        return (f"postgresql://{self.user}:{self.password}@127.0.0.1:{self.port}/{database}")

    def start(self) -> PgServer:
        pwfile = self.root / "pw"
        pwfile.write_text(self.password)
        if self.os_user:
            pw = pwd.getpwnam(self.os_user)
            os.chown(pwfile, pw.pw_uid, pw.pw_gid)
        os.chmod(pwfile, 0o600)
        self._run(str(self.bindir / "initdb"), "-D", str(self.data), "-U", self.user,
                  "--pwfile", str(pwfile), "--auth=scram-sha-256", "-E", "UTF8",
                  "--locale=C", "--no-sync")
        pwfile.unlink()
        with open(self.data / "postgresql.conf", "a") as fh:
            fh.write(f"\nlisten_addresses = '127.0.0.1'\nport = {self.port}\n"
                     f"unix_socket_directories = '{self.root}'\n"
                     "fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n"
                     "max_connections = 200\nshared_buffers = 32MB\n")
        self.pg_start()
        return self

    def pg_start(self) -> None:
        self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-l",
                  str(self.root / "log"), "-w", "-t", "60", "start")

    def pg_stop(self) -> None:
        self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w",
                  "-t", "60", "stop")

    def restart(self, down_seconds: float = 0.0) -> None:
        """Stop (fast: clients are cut off), stay down a while, start again."""
        self.pg_stop()
        time.sleep(down_seconds)
        self.pg_start()

    def psql(self, sql: str, database: str = "postgres") -> str:
        env = {**os.environ, "PGPASSWORD": self.password}
        proc = subprocess.run(
            [str(self.bindir / "psql"), "-h", "127.0.0.1", "-p", str(self.port), "-U",
             self.user, "-d", database, "-v", "ON_ERROR_STOP=1", "-Atc", sql],
            capture_output=True, text=True, timeout=60, env=env, check=False)
        if proc.returncode != 0:
            raise RuntimeError(f"psql: {proc.stderr}")
        return proc.stdout

    def new_database(self, prefix: str = "t") -> str:
        """A fresh empty database; returns its DSN."""
        self._counter += 1
        name = f"{prefix}_{os.getpid()}_{self._counter}"
        self.psql(f'CREATE DATABASE "{name}" TEMPLATE template0')
        return self.dsn(name)

    def drop_database(self, dsn: str) -> None:
        name = dsn.rsplit("/", 1)[-1]
        self.psql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def stop(self) -> None:
        try:
            self.pg_stop()
        except (RuntimeError, subprocess.SubprocessError, OSError):
            pass
        shutil.rmtree(self.root, ignore_errors=True)


_server: PgServer | None = None


def shared_server() -> PgServer | None:
    """One server per process, started on first use and stopped at exit; None when
    PostgreSQL is not installed (``make test`` installs it)."""
    global _server
    if _server is None:
        bindir = pg_bindir()
        if bindir is None:
            return None
        _server = PgServer(bindir).start()
        atexit.register(_server.stop)
    return _server


@pytest.fixture(scope="session")
def pg() -> PgServer:
    """The private PostgreSQL server (import this fixture into a conftest)."""
    server = shared_server()
    if server is None:
        pytest.fail("PostgreSQL is not installed: `make test` installs it (Debian package "
                    "postgresql).")
    return server


@pytest.fixture
def pg_dsn(pg: PgServer) -> Iterator[str]:
    """A fresh database on that server, dropped after the test."""
    dsn = pg.new_database()
    yield dsn
    pg.drop_database(dsn)


if __name__ == "__main__":
    server = shared_server()
    if server is None:
        raise SystemExit("PostgreSQL is not installed (apt-get install postgresql).")
    print(f"PostgreSQL running: {server.dsn()}\nPress Ctrl-C to stop.", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass

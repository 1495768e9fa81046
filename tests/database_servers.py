"""Real PostgreSQL and MariaDB servers on free loopback ports, for tests.

Each runs as an unprivileged user (``nobody`` when the tests run as root: neither
server starts as root) from a data directory of its own, copied from one
initialized once per run (``initdb`` and ``mariadb-install-db`` take seconds).
The tests kill and restart servers on purpose, so these are small process
handles like ``redis_server.py``'s; ``conftest.py`` wraps them in fixtures.
The server binaries are found by glob (Debian keeps PostgreSQL's under a
directory per major version) or on PATH. Every wait is bounded in time.
"""

from __future__ import annotations

import atexit
import contextlib
import glob
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

import psycopg
from server_process import HOST, READY_TIMEOUT, LoopbackServer

PG_USER = "postgres"
PG_PASSWORD = "s3cret-pg-password"
MARIADB_USER = "root"
UNPRIVILEGED = "nobody"
FALLBACK_USER = "wsgi-session-tests"


class DatabaseNotInstalled(RuntimeError):
    """A server binary the tests need is missing."""


def find_postgres(name: str) -> str:
    """The newest PostgreSQL major version's ``name`` binary (``initdb``, ``postgres``)."""
    found = sorted(
        glob.glob(f"/usr/lib/postgresql/*/bin/{name}"),
        key=lambda path: int(Path(path).parts[-3]) if Path(path).parts[-3].isdigit() else 0,
    )
    path = found[-1] if found else shutil.which(name)
    if path is None:
        raise DatabaseNotInstalled(
            f"PostgreSQL's {name} is not installed: the PostgreSQL tests need a real server "
            "(`make system-packages`, or install your system's postgresql package)"
        )
    return path


def find_mariadb(name: str) -> str:
    path = shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/bin")
    if path is None:
        raise DatabaseNotInstalled(
            f"{name} is not installed: the MariaDB tests need a real server "
            "(`make system-packages`, or install your system's mariadb-server package)"
        )
    return path


@cache
def _unprivileged() -> tuple[int, int] | None:
    """``(uid, gid)`` to run the servers as, or ``None`` when the tests are not root.

    ``nobody``, or a system user made for the tests where the system has none.
    """
    if os.geteuid() != 0:
        return None
    for name in (UNPRIVILEGED, FALLBACK_USER):
        try:
            user = pwd.getpwnam(name)
        except KeyError:
            continue
        return user.pw_uid, user.pw_gid
    _run_as_is(
        ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", FALLBACK_USER],
        "useradd",
    )
    user = pwd.getpwnam(FALLBACK_USER)
    return user.pw_uid, user.pw_gid


def _run_as_is(command: list[str], what: str) -> None:
    done = subprocess.run(command, capture_output=True, timeout=60, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{what} failed ({done.returncode}): {done.stderr.decode()[-500:]}")


def _demote() -> Callable[[], None] | None:
    ids = _unprivileged()
    if ids is None:
        return None
    uid, gid = ids

    def demote() -> None:  # in the child, before exec
        os.setgroups([])
        os.setgid(gid)
        os.setuid(uid)

    return demote


def _owned_directory(prefix: str) -> Path:
    """A new private directory the server's user owns (pytest's are root's alone)."""
    directory = Path(tempfile.mkdtemp(prefix=prefix))
    atexit.register(shutil.rmtree, directory, True)
    ids = _unprivileged()
    if ids is not None:
        os.chown(directory, *ids)
    return directory


def _chown_tree(root: Path) -> None:
    ids = _unprivileged()
    if ids is None:
        return
    for path in [root, *root.rglob("*")]:
        os.lchown(path, *ids)


def _run(command: list[str], what: str) -> None:
    done = subprocess.run(
        command, preexec_fn=_demote(), capture_output=True, timeout=120, check=False
    )
    if done.returncode != 0:
        output = (done.stdout + done.stderr).decode(errors="replace")[-2000:]
        raise RuntimeError(f"{what} failed ({done.returncode}): {output}")


def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(Exception):  # still starting: any error means "not yet"
            if condition():
                return
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not within {timeout} s")
        time.sleep(0.05)


def _children(pid: int) -> list[int]:
    """The processes whose parent is ``pid`` (from /proc)."""
    found = []
    for stat in glob.glob("/proc/[0-9]*/stat"):
        try:
            fields = Path(stat).read_text().rpartition(")")[2].split()
        except OSError:
            continue  # exited meanwhile
        if int(fields[1]) == pid:
            found.append(int(Path(stat).parent.name))
    return found


def _gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except OSError:
        return True
    return state in ("Z", "X")


class _DatabaseServer(LoopbackServer):
    """A server process and the processes it forks (PostgreSQL's each lead a session)."""

    template: Callable[[], Path]

    def __init__(self) -> None:
        super().__init__()
        self.root = _owned_directory(f"wsgi-session-{self.name}-")
        self.data = self.root / "data"
        shutil.copytree(self.template(), self.data, symlinks=True)
        _chown_tree(self.data)
        self.log = self.root / "server.log"

    def _command(self) -> list[str]:
        raise NotImplementedError

    def ready(self) -> bool:
        """Whether the server answers a query (it accepts connections before it can)."""
        raise NotImplementedError

    def start(self) -> Any:
        super().start()
        try:
            wait_for(self.ready, READY_TIMEOUT * 3, f"{self.name} on {self.address} ready")
        except TimeoutError:
            self.kill()
            raise
        return self

    def _launch(self) -> subprocess.Popen[bytes]:
        with self.log.open("ab") as log:
            return subprocess.Popen(
                self._command(),
                stdout=log,
                stderr=subprocess.STDOUT,
                preexec_fn=_demote(),
                start_new_session=True,
                cwd=self.root,
            )

    def _exit_detail(self, process: subprocess.Popen[bytes]) -> str:
        return self.log.read_text(errors="replace")[-2000:]

    def kill(self) -> None:
        """SIGKILL the server and every process it started, as a crash of the machine would.

        The server is frozen first, so that it forks nothing more while its
        children are killed; the kill returns once they are all gone (a new
        server refuses to start beside a child of the old one).
        """
        if not self.running:
            return
        pid = self.pid
        os.kill(pid, signal.SIGSTOP)
        children = _children(pid)
        for child in children:
            os.kill(child, signal.SIGKILL)
        super().kill()
        wait_for(lambda: all(_gone(child) for child in children), 10, "killed children gone")

    def remove(self) -> None:
        """Stop the server and delete its files."""
        self.kill()
        shutil.rmtree(self.root, ignore_errors=True)


# -- PostgreSQL ------------------------------------------------------------------


@cache
def _postgres_template() -> Path:
    root = _owned_directory("wsgi-session-pg-template-")
    password_file = root / "password"
    password_file.write_text(PG_PASSWORD + "\n")
    ids = _unprivileged()
    if ids is not None:
        os.chown(password_file, *ids)
    data = root / "data"
    _run(
        [
            find_postgres("initdb"),
            *("-D", str(data), "-U", PG_USER, "--pwfile", str(password_file)),
            *("--auth-host=scram-sha-256", "--auth-local=trust", "-E", "UTF8", "--no-sync"),
        ],
        "initdb",
    )
    return data


class PostgresServer(_DatabaseServer):
    """One ``postgres`` on ``127.0.0.1:port``, user ``PG_USER`` with password ``PG_PASSWORD``."""

    name = "postgres"
    template = staticmethod(_postgres_template)

    @property
    def url(self) -> str:
        return f"postgresql://{PG_USER}:{PG_PASSWORD}@{self.address}/postgres"

    def connect(self, **options: Any) -> psycopg.Connection[Any]:
        """A plain connection in autocommit, to look at what the server really holds."""
        return psycopg.connect(
            host=HOST,
            port=self.port,
            user=PG_USER,
            password=PG_PASSWORD,
            dbname="postgres",
            connect_timeout=5,
            autocommit=True,
            **options,
        )

    def query(self, sql: str, *params: object) -> list[tuple[Any, ...]]:
        with self.connect() as connection:
            cursor = connection.execute(sql, params)  # type: ignore[arg-type]
            return cursor.fetchall() if cursor.description else []

    def ready(self) -> bool:
        with self.connect() as connection:
            connection.execute("SELECT 1")
        return True

    def _command(self) -> list[str]:
        settings = {
            "listen_addresses": HOST,
            "port": str(self.port),
            "unix_socket_directories": str(self.root),
            "max_connections": "300",
            "shared_buffers": "16MB",
            "fsync": "off",
            "full_page_writes": "off",
            "log_min_messages": "warning",
        }
        command = [find_postgres("postgres"), "-D", str(self.data)]
        for name, value in settings.items():
            command += ["-c", f"{name}={value}"]
        return command


# -- MariaDB ---------------------------------------------------------------------


@cache
def _mariadb_template() -> Path:
    root = _owned_directory("wsgi-session-mariadb-template-")
    data = root / "data"
    command = [find_mariadb("mariadb-install-db"), "--no-defaults", f"--datadir={data}"]
    command += ["--auth-root-authentication-method=normal", "--skip-test-db"]
    ids = _unprivileged()
    if ids is not None:
        command.append(f"--user={pwd.getpwuid(ids[0]).pw_name}")
    _run(command, "mariadb-install-db")
    return data


class MariaDBServer(_DatabaseServer):
    """One ``mariadbd`` on ``127.0.0.1:port``; user ``root`` without a password."""

    name = "mariadb"
    template = staticmethod(_mariadb_template)

    def connect(self, **options: Any) -> Any:
        import MySQLdb

        return MySQLdb.connect(
            host=HOST, port=self.port, user=MARIADB_USER, connect_timeout=5, **options
        )

    def ready(self) -> bool:
        self.connect().close()
        return True

    def _command(self) -> list[str]:
        return [
            find_mariadb("mariadbd"),
            "--no-defaults",
            f"--datadir={self.data}",
            f"--port={self.port}",
            f"--bind-address={HOST}",
            f"--socket={self.root / 'mariadb.sock'}",
            f"--pid-file={self.root / 'mariadb.pid'}",
            "--skip-grant-tables",  # the test user needs no password and any grant
            "--skip-name-resolve",
            "--innodb-flush-log-at-trx-commit=0",
            "--innodb-buffer-pool-size=32M",
            "--innodb-log-file-size=16M",
            "--max-connections=300",
            "--skip-log-bin",
        ]

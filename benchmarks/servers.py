"""Server processes the benchmark starts for itself, on free loopback ports."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Sequence
from types import TracebackType

HOST = "127.0.0.1"
READY_TIMEOUT = 15.0


def free_port() -> int:
    """A loopback TCP port nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


class Process:
    """A server process listening on ``127.0.0.1:port``, stopped on exit."""

    def __init__(self, name: str, command: Sequence[str], port: int, **popen: object) -> None:
        self.name = name
        self.command = list(command)
        self.port = port
        self.popen = popen
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return f"{HOST}:{self.port}"

    def __enter__(self) -> Process:
        self._process = subprocess.Popen(self.command, **self.popen)  # type: ignore[call-overload]
        deadline = time.monotonic() + READY_TIMEOUT
        while True:
            if self._process.poll() is not None:
                raise RuntimeError(f"{self.name} exited at start: {' '.join(self.command)}")
            try:
                with socket.create_connection((HOST, self.port), timeout=0.2):
                    return self
            except OSError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"{self.name} did not listen on {self.address}") from None
                time.sleep(0.02)

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def stop(self) -> None:
        if self._process is None:
            return
        self._process.terminate()
        try:
            self._process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        self._process = None


def memcached(memory_mb: int = 64) -> Process:
    """A private memcached holding up to ``memory_mb`` of items."""
    executable = shutil.which("memcached")
    if executable is None:
        raise RuntimeError("memcached is not installed (make memcached)")
    port = free_port()
    command = [executable, "-u", "nobody", "-l", HOST, "-p", str(port), "-m", str(memory_mb)]
    return Process("memcached", command, port)


def redis() -> Process:
    """A private redis-server, without persistence (as a session cache runs)."""
    executable = shutil.which("redis-server")
    if executable is None:
        raise RuntimeError("redis-server is not installed (make system-packages)")
    port = free_port()
    command = [executable, "--bind", HOST, "--port", str(port), "--save", "", "--appendonly", "no"]
    return Process("redis", command, port, stdout=subprocess.DEVNULL)


class Postgres(Process):
    """A private PostgreSQL in a fresh data directory (``initdb``), trust auth on loopback.

    PostgreSQL refuses to run as root: as root it runs as ``nobody``, its files
    in a directory that user owns.
    """

    def __init__(self) -> None:
        import glob
        import os
        import pwd
        import tempfile

        found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
        initdb = found[-1] if found else shutil.which("initdb")
        if initdb is None:
            raise RuntimeError("PostgreSQL is not installed (make system-packages)")
        self.directory = tempfile.mkdtemp(prefix="wsgi-session-bench-pg-")
        demote = None
        if os.geteuid() == 0:
            user = pwd.getpwnam("nobody")
            os.chown(self.directory, user.pw_uid, user.pw_gid)

            def demote() -> None:
                os.setgroups([])
                os.setgid(user.pw_gid)
                os.setuid(user.pw_uid)

        data = f"{self.directory}/data"
        subprocess.run(
            [initdb, "-D", data, "-U", "postgres", "--auth=trust", "--no-sync"],
            preexec_fn=demote,
            check=True,
            capture_output=True,
        )
        port = free_port()
        command = [initdb.replace("/initdb", "/postgres"), "-D", data, "-p", str(port)]
        command += [
            "-c",
            f"listen_addresses={HOST}",
            "-c",
            f"unix_socket_directories={self.directory}",
        ]
        # Durable commits as a production server makes them; no fsync of a throwaway cluster.
        command += ["-c", "fsync=off", "-c", "max_connections=100"]
        super().__init__(
            "postgres",
            command,
            port,
            preexec_fn=demote,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    @property
    def url(self) -> str:
        return f"postgresql://postgres@{self.address}/postgres"

    def __enter__(self) -> Postgres:
        super().__enter__()
        import psycopg

        deadline = time.monotonic() + READY_TIMEOUT
        while True:  # it accepts connections before it can answer them
            try:
                psycopg.connect(self.url, connect_timeout=2).close()
                return self
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise
                time.sleep(0.05)

    def stop(self) -> None:
        import signal

        if self._process is not None:
            # SIGINT is PostgreSQL's fast shutdown (SIGTERM would wait for every client).
            self._process.send_signal(signal.SIGINT)
            try:
                self._process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
            self._process = None
        shutil.rmtree(self.directory, ignore_errors=True)

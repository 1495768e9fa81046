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

"""A real memcached process on a free loopback port, for tests.

The tests stop, kill and restart servers on purpose, so this is a small
process handle rather than a pytest plugin; ``conftest.py`` wraps it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from types import TracebackType

from pymemcache.client.base import Client  # type: ignore[import-untyped]

HOST = "127.0.0.1"
READY_TIMEOUT = 10.0
_START_ATTEMPTS = 5


class MemcachedNotInstalled(RuntimeError):
    """There is no ``memcached`` executable on PATH."""


def find_memcached() -> str:
    """Return the path of the memcached executable or raise."""
    path = shutil.which("memcached")
    if path is None:
        raise MemcachedNotInstalled(
            "memcached is not installed: the memcached tests need a real server "
            "(`make memcached`, or install your system's memcached package)"
        )
    return path


def free_port() -> int:
    """A loopback TCP port nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


class MemcachedServer:
    """One ``memcached`` process listening on ``127.0.0.1:port``.

    ``item_size`` is passed as ``-I`` (for example ``"2m"``); the memcached
    default is 1 MB. The port is kept across :meth:`stop` / :meth:`kill` and
    :meth:`start`, so a restarted server is the same address to clients.
    """

    def __init__(self, item_size: str | None = None) -> None:
        self.executable = find_memcached()
        self.item_size = item_size
        self.port = 0
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        """``host:port`` as stores and clients take it."""
        return f"{HOST}:{self.port}"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self) -> MemcachedServer:
        """Start the process and return once it accepts connections."""
        if self.running:
            raise RuntimeError(f"memcached on {self.address} is already running")
        if self.port:
            self._spawn()
            return self
        # A free port can be taken between probing and binding it: try another.
        for _ in range(_START_ATTEMPTS):
            self.port = free_port()
            try:
                self._spawn()
            except OSError:
                continue
            return self
        raise RuntimeError(f"memcached did not start in {_START_ATTEMPTS} attempts")

    def stop(self) -> None:
        """Shut the server down cleanly (SIGTERM), then wait for it."""
        self._end(kill=False)

    def kill(self) -> None:
        """Kill the server abruptly (SIGKILL), as a crash would."""
        self._end(kill=True)

    def pause(self) -> None:
        """Freeze the process (SIGSTOP): connections are accepted, never answered."""
        self._signal(signal.SIGSTOP)
        assert self._process is not None
        # The signal is delivered asynchronously: wait until the process has stopped.
        os.waitpid(self._process.pid, os.WUNTRACED)

    def resume(self) -> None:
        """Let a paused process run again (SIGCONT)."""
        self._signal(signal.SIGCONT)

    def restart(self) -> MemcachedServer:
        """Kill and start again on the same port, with an empty cache."""
        self.kill()
        return self.start()

    def _signal(self, signum: int) -> None:
        if self._process is None:
            raise RuntimeError(f"memcached on {self.address} is not running")
        self._process.send_signal(signum)

    def _command(self) -> list[str]:
        command = [self.executable, "-u", "nobody", "-l", HOST, "-p", str(self.port)]
        if self.item_size is not None:
            command += ["-I", self.item_size]
        return command

    def _spawn(self) -> None:
        process = subprocess.Popen(
            self._command(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        self._process = process
        deadline = time.monotonic() + READY_TIMEOUT
        while time.monotonic() < deadline:
            if process.poll() is not None:
                self._process = None
                stderr = process.stderr.read().decode(errors="replace") if process.stderr else ""
                raise OSError(
                    f"memcached on port {self.port} exited with {process.returncode}: {stderr}"
                )
            try:
                socket.create_connection((HOST, self.port), timeout=0.2).close()
            except OSError:
                time.sleep(0.01)
                continue
            return
        self._end(kill=True)
        raise RuntimeError(f"memcached on {self.address} did not accept connections")

    def _end(self, *, kill: bool) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        if kill:
            process.kill()
        else:
            process.send_signal(signal.SIGCONT)  # a paused server cannot handle SIGTERM
            process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if process.stderr:
            process.stderr.close()

    @contextlib.contextmanager
    def client(self) -> Iterator[Client]:
        """A plain client, to look at what the server really holds."""
        client = Client((HOST, self.port), default_noreply=False)
        try:
            yield client
        finally:
            client.close()

    def __enter__(self) -> MemcachedServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


MemcachedFactory = Callable[..., MemcachedServer]
"""``memcached_factory(item_size=None)``: start one more server for this test."""

"""A real memcached process on a free loopback port, for tests.

The tests stop, kill and restart servers on purpose, so this is a small
process handle rather than a pytest plugin; ``conftest.py`` wraps it.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
from collections.abc import Callable, Iterator
from types import TracebackType

from pymemcache.client.base import Client  # type: ignore[import-untyped]
from server_process import HOST, LoopbackServer, free_port

__all__ = [
    "HOST",
    "MemcachedFactory",
    "MemcachedNotInstalled",
    "MemcachedServer",
    "find_memcached",
    "free_port",
]


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


class MemcachedServer(LoopbackServer):
    """One ``memcached`` process listening on ``127.0.0.1:port``.

    ``item_size`` is passed as ``-I`` (for example ``"2m"``); the memcached
    default is 1 MB. The port is kept across :meth:`stop` / :meth:`kill` and
    :meth:`start`, so a restarted server is the same address to clients.
    """

    name = "memcached"

    def __init__(self, item_size: str | None = None) -> None:
        super().__init__()
        self.executable = find_memcached()
        self.item_size = item_size

    @property
    def url(self) -> str:
        return f"memcached://{self.address}"

    def restart(self) -> MemcachedServer:
        """Kill and start again on the same port, with an empty cache."""
        self.kill()
        return self.start()

    def _command(self) -> list[str]:
        command = [self.executable, "-u", "nobody", "-l", HOST, "-p", str(self.port)]
        if self.item_size is not None:
            command += ["-I", self.item_size]
        return command

    def _launch(self) -> subprocess.Popen[bytes]:
        return subprocess.Popen(self._command(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def _exit_detail(self, process: subprocess.Popen[bytes]) -> str:
        return process.stderr.read().decode(errors="replace") if process.stderr else ""

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

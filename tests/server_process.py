"""One server process on a free loopback port, as the test servers share it.

Start it on a free port (another if the port is taken meanwhile), wait until it
accepts connections, and stop, kill, pause or resume it. The port is kept
across :meth:`LoopbackServer.kill` and :meth:`LoopbackServer.start`, so a
restarted server is the same address to clients. Every wait is bounded in time.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from typing import TypeVar

HOST = "127.0.0.1"
READY_TIMEOUT = 10.0
_START_ATTEMPTS = 5

Self = TypeVar("Self", bound="LoopbackServer")


def free_port() -> int:
    """A loopback TCP port nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


class LoopbackServer:
    """The process handle; a subclass says how to launch it and why it exited."""

    name = "server"

    def __init__(self) -> None:
        self.port = 0
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        """``host:port`` as stores and clients take it."""
        return f"{HOST}:{self.port}"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    @property
    def pid(self) -> int:
        assert self._process is not None
        return self._process.pid

    def start(self: Self) -> Self:
        """Start the process and return once it accepts connections."""
        if self.running:
            raise RuntimeError(f"{self.name} on {self.address} is already running")
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
        raise RuntimeError(f"{self.name} did not start in {_START_ATTEMPTS} attempts")

    def stop(self) -> None:
        """Shut the server down cleanly (SIGTERM), then wait for it."""
        self._end(kill=False)

    def kill(self) -> None:
        """Kill the server abruptly (SIGKILL), as a crash would."""
        self._end(kill=True)

    def pause(self) -> None:
        """Freeze the process (SIGSTOP): connections are accepted, never answered."""
        process = self._running_process()
        process.send_signal(signal.SIGSTOP)
        # The signal is delivered asynchronously: wait until the process has stopped.
        os.waitpid(process.pid, os.WUNTRACED)

    def resume(self) -> None:
        """Let a paused process run again (SIGCONT)."""
        self._running_process().send_signal(signal.SIGCONT)

    def _running_process(self) -> subprocess.Popen[bytes]:
        if self._process is None:
            raise RuntimeError(f"{self.name} on {self.address} is not running")
        return self._process

    def _launch(self) -> subprocess.Popen[bytes]:
        """Start the process on ``self.port``, without waiting for it."""
        raise NotImplementedError

    def _exit_detail(self, process: subprocess.Popen[bytes]) -> str:
        """What the process said before it exited early."""
        return ""

    def _spawn(self) -> None:
        process = self._launch()
        self._process = process
        deadline = time.monotonic() + READY_TIMEOUT
        while time.monotonic() < deadline:
            if process.poll() is not None:
                self._process = None
                raise OSError(
                    f"{self.name} on port {self.port} exited with {process.returncode}: "
                    + self._exit_detail(process)
                )
            try:
                socket.create_connection((HOST, self.port), timeout=0.2).close()
            except OSError:
                time.sleep(0.01)
                continue
            return
        self._end(kill=True)
        raise RuntimeError(f"{self.name} on {self.address} did not accept connections")

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

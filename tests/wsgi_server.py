"""A real HTTP server process (gunicorn, an example script) on a loopback port, for tests."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import requests
from memcached_server import HOST, free_port

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
BIN = Path(sys.executable).parent
READY_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0
_VISITS = re.compile(r"been here (\d+) times? \(served by process (\d+)\)")


def server_env(tmp_path: Path, **settings: str) -> dict[str, str]:
    """This environment without any ``WSGI_SESSION_*`` variable, plus ``settings``.

    The default SQLite file goes under ``tmp_path``, never the user's home.
    """
    env = {
        name: value for name, value in os.environ.items() if not name.startswith("WSGI_SESSION_")
    }
    env["XDG_STATE_HOME"] = str(tmp_path / "state")
    env.update(settings)
    return env


class ServerProcess:
    """``command`` (which must listen on ``self.port``) run until :meth:`stop`.

    Its output goes to a file (a pipe nobody reads could fill up and block
    it) and is shown when it fails to start.
    """

    def __init__(
        self,
        command: Sequence[str],
        *,
        env: Mapping[str, str],
        cwd: Path,
        port: int,
        log_dir: Path | None = None,
    ) -> None:
        self.command = list(command)
        self.env = dict(env)
        self.cwd = cwd
        self.port = port
        self.log = (log_dir or cwd) / f"server-{port}.log"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}/"

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def run(self) -> subprocess.Popen[bytes]:
        """Start the process without waiting for it to listen."""
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                self.command, cwd=self.cwd, env=self.env, stdout=log, stderr=subprocess.STDOUT
            )
        return self.process

    def start(self) -> ServerProcess:
        """Start the process and return once it accepts connections."""
        process = self.run()
        deadline = time.monotonic() + READY_TIMEOUT
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(
                    f"{self.command} exited with {process.returncode}:\n{self.output()}"
                )
            try:
                socket.create_connection((HOST, self.port), timeout=0.5).close()
            except OSError:
                time.sleep(0.05)
                continue
            return self
        self.stop()
        raise RuntimeError(f"{self.command} did not listen on {self.port}:\n{self.output()}")

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def gunicorn_command(*args: str) -> list[str]:
    """``gunicorn`` from this environment, bound to a free port, with ``args``."""
    import gunicorn.config

    command = [str(BIN / "gunicorn"), *args]
    # gunicorn 24+ opens a control socket at one fixed path in $HOME by default.
    if any(setting.name == "control_socket_disable" for setting in gunicorn.config.KNOWN_SETTINGS):
        command.append("--no-control-socket")
    return command


def client() -> requests.Session:
    """A cookie-keeping client that opens a new connection for every request."""
    session = requests.Session()
    session.headers["Connection"] = "close"
    return session


def visit(browser: requests.Session, url: str) -> tuple[int, int]:
    """GET the example app's counter: ``(visits, pid of the process that answered)``."""
    response = browser.get(url, timeout=10)
    assert response.status_code == 200, response.text
    found = _VISITS.search(response.text)
    assert found is not None, response.text
    return int(found[1]), int(found[2])


def visit_with_worker_paused(browser: requests.Session, url: str, pid: int) -> tuple[int, int]:
    """One visit while the worker ``pid`` is stopped (SIGSTOP), so another worker answers it.

    A gthread worker keeps accepting connections while its threads serve others, so a slow
    client does not keep it from answering; a stopped process accepts nothing. The client
    opens a new connection for the visit, so none is kept alive to the stopped worker.
    """
    os.kill(pid, signal.SIGSTOP)
    try:
        return visit(browser, url)
    finally:
        os.kill(pid, signal.SIGCONT)


def visit_past_a_slow_client(browser: requests.Session, port: int) -> list[tuple[int, int]]:
    """Two visits: one from a client slow to send its headers, one in between.

    A sync worker serves one connection at a time, and accepted connections
    come off the listening socket in order: while the slow client holds one
    worker, the other one answers. Returns ``(visits, pid)`` in answer order.
    """
    cookie = "; ".join(f"{name}={value}" for name, value in browser.cookies.items())
    with socket.create_connection((HOST, port), timeout=10) as slow:
        slow.sendall(f"GET / HTTP/1.1\r\nHost: {HOST}\r\nCookie: {cookie}\r\n".encode())
        between = visit(browser, f"http://{HOST}:{port}/")
        slow.sendall(b"Connection: close\r\n\r\n")
        response = b""
        while chunk := slow.recv(65536):
            response += chunk
    assert response.startswith(b"HTTP/1.1 200"), response
    found = _VISITS.search(response.decode())
    assert found is not None, response
    return [between, (int(found[1]), int(found[2]))]


__all__ = [
    "EXAMPLES",
    "ServerProcess",
    "client",
    "free_port",
    "gunicorn_command",
    "visit",
    "visit_past_a_slow_client",
    "visit_with_worker_paused",
]

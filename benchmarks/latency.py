"""A store across a network: a loopback TCP proxy that delays every chunk, each way.

:class:`DelayProxy` listens on a free ``127.0.0.1`` port and forwards each
connection to the store server, holding every chunk it reads for ``delay``
seconds before passing it on, in both directions. A request/response protocol
(memcached's, Redis's) then pays ``2 * delay`` more per round trip, as it would
with the store on another machine; bandwidth is not limited. Standard library
only: two threads per connection, one per direction, each chunk sent when it is
due, so a burst of chunks is delayed, not serialized behind the sleeps.
"""

from __future__ import annotations

import contextlib
import heapq
import socket
import statistics
import threading
import time
from types import TracebackType

from benchmarks.servers import HOST

CHUNK = 65536


class DelayProxy:
    """``127.0.0.1:port`` forwarding to ``target`` (``host:port``), ``delay`` s each way."""

    def __init__(self, target: str, delay: float) -> None:
        host, port = target.rsplit(":", 1)
        self.target = (host, int(port))
        self.delay = delay
        self._listener = socket.create_server((HOST, 0))
        self.port = int(self._listener.getsockname()[1])
        self._closing = threading.Event()
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()

    @property
    def address(self) -> str:
        return f"{HOST}:{self.port}"

    def __enter__(self) -> DelayProxy:
        threading.Thread(target=self._accept, name="delay-proxy", daemon=True).start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._closing.set()
        self._listener.close()
        with self._lock:
            for sock in self._sockets:
                sock.close()

    def _accept(self) -> None:
        while not self._closing.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return  # closed
            upstream = socket.create_connection(self.target)
            for sock in (client, upstream):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self._lock:
                self._sockets += [client, upstream]
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        """Forward what ``source`` sends to ``sink``, each chunk ``delay`` after it came."""
        due: list[tuple[float, int, bytes]] = []  # (when, order, chunk)
        ready = threading.Condition()
        order = 0
        done = False

        def send() -> None:
            while True:
                with ready:
                    while not due and not done:
                        ready.wait()
                    if not due:
                        return
                    when, _, chunk = due[0]
                    wait = when - time.monotonic()
                    if wait > 0:
                        ready.wait(wait)
                        continue
                    heapq.heappop(due)
                try:
                    sink.sendall(chunk)
                except OSError:
                    return

        sender = threading.Thread(target=send, daemon=True)
        sender.start()
        try:
            while True:
                chunk = source.recv(CHUNK)
                if not chunk:
                    break
                with ready:
                    heapq.heappush(due, (time.monotonic() + self.delay, order, chunk))
                    order += 1
                    ready.notify()
        except OSError:
            pass  # the other side closed: the sender finishes what is due
        with ready:
            done = True
            ready.notify()
        sender.join(timeout=5)
        for sock in (source, sink):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


def round_trip_us(address: str, count: int = 200) -> float:
    """The median µs of a memcached ``version`` command to ``address``: what a round trip costs."""
    host, port = address.rsplit(":", 1)
    with socket.create_connection((host, int(port))) as connection:
        connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        times = []
        for _ in range(count):
            start = time.perf_counter()
            connection.sendall(b"version\r\n")
            reply = b""
            while not reply.endswith(b"\r\n"):
                reply += connection.recv(CHUNK)
            times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e6

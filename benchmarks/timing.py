"""Timing direct WSGI calls and raw store operations: medians of per-call times."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any

from benchmarks.apps import WSGIApp, environ

WARMUP = 30


class Failed(RuntimeError):
    """A request under test answered something other than 200."""


class Capture:
    """A start_response that remembers the last status and headers."""

    status = ""
    headers: list[tuple[str, str]] = []  # noqa: RUF012 (replaced, never mutated)

    def __call__(self, status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        self.status = status
        self.headers = headers
        return _write

    def cookie(self) -> str:
        """The request Cookie header a browser would send after this response."""
        pairs = [
            value.split(";", 1)[0] for name, value in self.headers if name.lower() == "set-cookie"
        ]
        return "; ".join(pairs)


def _write(data: bytes) -> None:
    pass


def request(app: WSGIApp, env: dict[str, Any]) -> Capture:
    """One request through ``app``; the response body is read and closed."""
    capture = Capture()
    body = app(env, capture)
    for _chunk in body:
        pass
    close = getattr(body, "close", None)
    if close is not None:
        close()
    return capture


def seed(app: WSGIApp, name: str) -> str:
    """Store the payload in a new session; returns the Cookie header that finds it."""
    capture = request(app, environ("/seed"))
    cookie = capture.cookie()
    if not capture.status.startswith("200") or not cookie:
        raise Failed(f"{name}: seeding answered {capture.status!r} with no cookie")
    return cookie


def sample_wsgi(
    app: WSGIApp, envs: Sequence[dict[str, Any]], count: int, out: list[int], name: str
) -> None:
    """Append ``count`` per-request times (ns) to ``out``, cycling through ``envs``."""
    capture = Capture()
    timer = time.perf_counter_ns
    size = len(envs)
    for i in range(WARMUP + count):
        env = envs[i % size].copy()
        start = timer()
        body = app(env, capture)
        for _chunk in body:
            pass
        close = getattr(body, "close", None)
        if close is not None:
            close()
        elapsed = timer() - start
        if capture.status[:3] != "200":
            raise Failed(f"{name} {env['PATH_INFO']}: answered {capture.status!r}")
        if i >= WARMUP:
            out.append(elapsed)


def sample_calls(call: Callable[[int], object], count: int, out: list[int]) -> None:
    """Append ``count`` times (ns) of ``call(i)`` to ``out``."""
    timer = time.perf_counter_ns
    for i in range(WARMUP + count):
        start = timer()
        call(i)
        elapsed = timer() - start
        if i >= WARMUP:
            out.append(elapsed)


def median_us(samples: Sequence[float]) -> float:
    return statistics.median(samples) / 1000


def sample_batches(call: Callable[[], object], count: int, out: list[float], batch: int) -> None:
    """Append ``count`` per-call times (ns) of ``call()`` to ``out``, each the mean of a batch.

    A piece takes well under a µs, about what reading the clock twice costs:
    timing ``batch`` calls at once keeps the clock out of the number.
    """
    timer = time.perf_counter_ns
    calls = range(batch)
    for i in range(WARMUP + count):
        start = timer()
        for _ in calls:
            call()
        elapsed = timer() - start
        if i >= WARMUP:
            out.append(elapsed / batch)

"""Concurrent requests on one session, across real gunicorn worker processes.

gunicorn (sync workers, or gthread workers with several threads) serves
``concurrency_app.py`` in front of a real SQLite file, a real memcached, a real Redis or a
real PostgreSQL.
Races are ordered through files, never sleeps: a racing request loads its
session, says so with a file, and waits for a gate file the test creates.
``test_concurrency_merge.py`` checks the same rules with threads in one process.

Run with ``-s`` to see the measured conflict counts.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest
import requests
from helpers import SetCookie, make, parse_set_cookie, record_lock, store_key
from memcached_server import HOST
from wsgi_server import ServerProcess, free_port, gunicorn_command, server_env

from wsgi_session import ServerSideBackend, Store
from wsgi_session.config import store_from_url
from wsgi_session.record import Record
from wsgi_session.serialization import loads

TESTS = Path(__file__).resolve().parent
SECRET = "concurrency-test-secret-0123456789abcdef0123456789"
WAIT = 30.0  # seconds before a stuck race fails the test instead of hanging it
WRITERS = 50
SLOW_WRITERS = 20
DROPPED_WARNING = "session was destroyed by a concurrent request"
STATS = ("conflicts", "merges", "dropped")
GATE = "go"

# Each worker class gets enough request slots for every slow writer held at
# its gate plus the logout; a gthread worker takes no more connections than
# it has threads, so none waits behind a held request.
WORKERS: dict[str, tuple[list[str], int]] = {
    "sync": (["--workers", "22"], 22),
    "gthread": (
        ["--workers", "2", "--threads", "12", "--worker-connections", "12", "--keep-alive", "0"],
        24,
    ),
}


@dataclass(frozen=True)
class Answer:
    """One response of ``concurrency_app``."""

    cookies: list[SetCookie]
    pid: int
    data: dict[str, Any]
    stats: dict[str, int]


class Site:
    """gunicorn serving ``concurrency_app`` with one store, and a pool of HTTP clients."""

    def __init__(self, store_url: str, worker_class: str, tmp_path: Path, **settings: str) -> None:
        args, self.slots = WORKERS[worker_class]
        self.worker_class = worker_class
        self.signals = tmp_path / "signals"
        self.signals.mkdir()
        port = free_port()
        command = gunicorn_command(
            *("--bind", f"{HOST}:{port}", "--worker-class", worker_class, *args),
            *("--chdir", str(TESTS), "concurrency_app:application"),
        )
        env = server_env(
            tmp_path,
            WSGI_SESSION_SECRET_KEY=SECRET,
            WSGI_SESSION_STORE=store_url,
            CONCURRENCY_SIGNALS=str(self.signals),
            **settings,
        )
        self.server = ServerProcess(command, env=env, cwd=tmp_path, port=port)
        store = store_from_url(store_url)
        assert isinstance(store, Store)
        self.store = store
        self.pool = ThreadPoolExecutor(max_workers=WRITERS)
        self.answers: list[Answer] = []

    def get(self, path: str, cookie: SetCookie | None = None) -> Answer:
        """GET ``path`` on a new connection, sending ``cookie``; it must answer 200."""
        headers = {"Connection": "close"}
        if cookie is not None:
            headers["Cookie"] = f"{cookie.name}={cookie.value}"
        response = requests.get(self.server.url + path.lstrip("/"), headers=headers, timeout=WAIT)
        assert response.status_code == 200, f"{path}: {response.status_code} {response.text}"
        body = response.json()
        answer = Answer(
            [parse_set_cookie(header) for header in response.raw.headers.getlist("Set-Cookie")],
            body["pid"],
            body["data"],
            body["stats"],
        )
        self.answers.append(answer)
        return answer

    def seed(self) -> tuple[SetCookie, int]:
        """A new session holding ``seed``: its cookie, and the pid ``seed`` holds."""
        answer = self.get("/write?key=seed")
        (cookie,) = answer.cookies
        return cookie, answer.pid

    def race(self, keys: list[str], cookie: SetCookie) -> list[Future[Answer]]:
        """A writer for each of ``keys``: each loads the session, then waits for the gate."""
        return [self.pool.submit(self.get, f"/write?key={key}&gate={GATE}", cookie) for key in keys]

    def wait_loaded(self, keys: list[str], count: int) -> None:
        """Return once ``count`` of the writers of ``keys`` have loaded their session."""
        deadline = time.monotonic() + WAIT
        while sum((self.signals / f"loaded-{key}").exists() for key in keys) < count:
            assert time.monotonic() < deadline, f"fewer than {count} writers ever loaded"
            time.sleep(0.01)

    def open_gate(self) -> None:
        (self.signals / GATE).touch()

    def stored(self, cookie: SetCookie) -> dict[str, Any] | None:
        """The session data in the store itself (``None``: no record at all)."""
        found = self.store.load(store_key(cookie.session_id))
        if found is None:
            return None
        record = Record.decode(found[0], record_lock(cookie.session_id, SECRET))  # sealed or not
        assert record is not None, found[0]
        assert not record.retired, record
        return loads(record.text)

    def counters(self) -> dict[str, int]:
        """Every worker's conflict counters, summed.

        Each answer carries its worker's counters read after its own commit,
        and they only go up, so a worker's largest ones count all its commits.
        """
        latest: dict[int, dict[str, int]] = {}
        for answer in self.answers:
            mine = latest.setdefault(answer.pid, answer.stats)
            latest[answer.pid] = {name: max(mine[name], answer.stats[name]) for name in STATS}
        return {name: sum(stats[name] for stats in latest.values()) for name in STATS}

    def conflicts_per_request(self) -> Counter[int]:
        """How many requests saw 0, 1, 2, ... conflicts (sync workers only).

        A sync worker serves one request at a time, so the step between two of
        its answers' counters is the later request's own count.
        """
        assert self.worker_class == "sync"
        steps: Counter[int] = Counter()
        for pid in {answer.pid for answer in self.answers}:
            seen = sorted(a.stats["conflicts"] for a in self.answers if a.pid == pid)
            steps.update(later - earlier for earlier, later in pairwise([0, *seen]))
        return steps

    def report(self, test: str, racing: int) -> None:
        counts = self.counters()
        line = (
            f"\n[{test}] {self.worker_class} workers, {self.store!r}: "
            f"{racing} racing requests, {counts['conflicts']} conflicts "
            f"({counts['conflicts'] / racing:.2f} a request), {counts['merges']} merges, "
            f"{counts['dropped']} dropped"
        )
        if self.worker_class == "sync":
            seen = sorted(self.conflicts_per_request().items())
            line += f"; requests by conflicts seen: {dict(seen)}"
        print(line)

    def stop(self) -> None:
        self.open_gate()  # after a failure, writers still held must not delay the shutdown
        self.pool.shutdown(wait=True, cancel_futures=True)
        self.server.stop()
        close = getattr(self.store, "close", None)
        if close is not None:
            close()


@pytest.fixture(params=["sqlite", "memcached", "redis", "postgres"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite://{tmp_path / 'sessions.db'}"
    if request.param == "redis":
        return request.getfixturevalue("redis_server").url  # type: ignore[no-any-return]
    if request.param == "postgres":
        server = request.getfixturevalue("shared_postgres")
        return f"{server.url}?table={request.getfixturevalue('table')}"  # type: ignore[no-any-return]
    return f"memcached://{request.getfixturevalue('memcached_server').address}"


@pytest.fixture(params=list(WORKERS))
def site(request: pytest.FixtureRequest, store_url: str, tmp_path: Path) -> Iterator[Site]:
    """A fresh server for each test: the counters start at zero."""
    site = Site(store_url, request.param, tmp_path)
    site.server.start()
    try:
        yield site
    finally:
        site.stop()


@pytest.fixture
def sealed_site(store_url: str, tmp_path: Path) -> Iterator[Site]:
    """The same with ``WSGI_SESSION_SEAL_RECORDS=true``, sync workers."""
    site = Site(store_url, "sync", tmp_path, WSGI_SESSION_SEAL_RECORDS="true")
    site.server.start()
    try:
        yield site
    finally:
        site.stop()


def test_concurrent_writers_in_several_processes_all_keep_their_key(site: Site) -> None:
    writers_all_keep_their_key(site)


def test_concurrent_writers_merge_into_sealed_records_too(sealed_site: Site) -> None:
    cookie = writers_all_keep_their_key(sealed_site)
    found = sealed_site.store.load(store_key(cookie.session_id))
    assert found is not None and found[0].startswith(b"1s ")


def writers_all_keep_their_key(site: Site) -> SetCookie:
    """Writers held at a gate on one session, in several processes: every key is kept."""
    cookie, seeded_by = site.seed()
    keys = [f"k{n}" for n in range(WRITERS)]
    writers = site.race(keys, cookie)
    # Every request slot now holds a writer that loaded the seeded record.
    site.wait_loaded(keys, site.slots)
    site.open_gate()
    answers = [writer.result(WAIT) for writer in writers]

    # The write that landed first re-sends the cookie (as Flask and Django do);
    # merged ones leave it to that one. Never another id, never an expiry.
    sent = [c for answer in answers for c in answer.cookies]
    assert {(c.session_id, c.expires_now) for c in sent} <= {(cookie.session_id, False)}
    expected = {"seed": seeded_by} | {
        key: answer.pid for key, answer in zip(keys, answers, strict=True)
    }
    assert site.stored(cookie) == expected
    assert site.get("/read", cookie).data == expected
    assert len({answer.pid for answer in answers}) >= 2
    counts = site.counters()
    site.report("writers", WRITERS)
    # The writers held at the gate all loaded one version: all but one conflicted.
    assert counts["conflicts"] == counts["merges"] >= site.slots - 1
    assert counts["dropped"] == 0
    return cookie


def test_logout_racing_slow_writers_in_several_processes_stays_logged_out(site: Site) -> None:
    cookie, _ = site.seed()
    keys = [f"w{n}" for n in range(SLOW_WRITERS)]
    writers = site.race(keys, cookie)
    site.wait_loaded(keys, SLOW_WRITERS)
    logout = site.get("/logout", cookie)
    site.open_gate()
    answers = [writer.result(WAIT) for writer in writers]

    assert [c.expires_now for c in logout.cookies] == [True]
    for answer in answers:
        assert [c.expires_now for c in answer.cookies] == [True], answer
    assert site.stored(cookie) is None
    assert site.get("/read", cookie).data == {}
    site.report("logout", SLOW_WRITERS)
    assert site.counters() == {"conflicts": SLOW_WRITERS, "merges": 0, "dropped": SLOW_WRITERS}
    assert site.server.output().count(DROPPED_WARNING) == SLOW_WRITERS


def test_without_a_conflict_a_write_costs_one_load_and_one_save() -> None:
    # A read-only request is exactly one load: test_middleware.py,
    # test_read_only_request_loads_once_and_varies_without_writing.
    client, middleware, store = make()

    client.get("/set")  # no cookie yet: nothing to load
    assert store.calls == {"save": 1}
    store.calls.clear()

    client.get("/set2")
    assert store.calls == {"load": 1, "save": 1}
    assert isinstance(middleware.backend, ServerSideBackend)
    assert middleware.backend.stats.as_dict() == {"conflicts": 0, "merges": 0, "dropped": 0}

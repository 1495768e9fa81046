"""Store faults under load, through real gunicorn (sync and gthread workers).

Clients write to their sessions without pause while the store fails:
memcached, Redis and PostgreSQL are killed with SIGKILL and restarted (memcached
and Redis empty: neither keeps anything on disk here; PostgreSQL with what it
committed); the SQLite file is held by another process's exclusive lock for
longer than the busy timeout, a PostgreSQL table by another connection's lock
for longer than the statement timeout. Every
request is put in a phase by when it started and ended (a request that
straddles a fault is "transition" and only reported). Required:

- every answer is a 200 or a 503, never a 500;
- no write answers 2xx while the store cannot take it;
- every write that answered 2xx is found in the store afterwards;
- the service comes back on its own when the store does (no server restart).

Bounded: each phase ends after a number of requests, or after ``WAIT``
seconds (then the test fails). Run with ``-s`` to see the figures.
"""

from __future__ import annotations

import itertools
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
from database_servers import PostgresServer
from helpers import store_key
from memcached_server import HOST, MemcachedServer
from redis_server import RedisServer
from wsgi_server import ServerProcess, free_port, gunicorn_command, server_env

from wsgi_session import Store
from wsgi_session.config import store_from_url
from wsgi_session.record import Record
from wsgi_session.serialization import loads

TESTS = Path(__file__).resolve().parent
SECRET = "faults-test-secret-0123456789abcdef0123456789abcdef"
CLIENTS = 6
PER_PHASE = 60  # requests completed within a phase before it ends
WAIT = 30.0  # seconds a phase may take before the test fails
WORKERS = {
    "sync": ["--workers", "3"],
    "gthread": ["--workers", "2", "--threads", "4"],
}


@dataclass(frozen=True)
class Write:
    client: int
    key: str
    started: float
    ended: float
    status: int
    session_id: str | None  # the client's session after the answer


class Load:
    """``CLIENTS`` threads writing a new key to their own session, one request after another."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.writes: list[Write] = []
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.keys = itertools.count()
        self.threads = [threading.Thread(target=self.client, args=(n,)) for n in range(CLIENTS)]

    def __enter__(self) -> Load:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopping.set()
        for thread in self.threads:
            thread.join()

    def client(self, number: int) -> None:
        browser = requests.Session()
        browser.headers["Connection"] = "close"
        while not self.stopping.is_set():
            key = f"c{number}k{next(self.keys)}"
            started = time.monotonic()
            try:
                status = browser.get(f"{self.url}write?key={key}", timeout=WAIT).status_code
            except requests.RequestException:
                status = 0  # no answer at all
            ended = time.monotonic()
            cookie = browser.cookies.get("session")
            session_id = cookie.split(".", 1)[0] if cookie else None
            with self.lock:
                self.writes.append(Write(number, key, started, ended, status, session_id))

    def completed_since(self, moment: float) -> int:
        with self.lock:
            return sum(1 for write in self.writes if write.started >= moment)

    def wait_for(self, what: str, done: Callable[[], bool]) -> None:
        deadline = time.monotonic() + WAIT
        while not done():
            assert time.monotonic() < deadline, f"{what}: not within {WAIT} s"
            time.sleep(0.02)

    def run_phase(self, name: str, since: float) -> None:
        self.wait_for(name, lambda: self.completed_since(since) >= PER_PHASE)

    def between(self, start: float, end: float) -> list[Write]:
        with self.lock:
            return [w for w in self.writes if w.started >= start and w.ended <= end]


def figures(writes: list[Write]) -> str:
    statuses = Counter(write.status for write in writes)
    return f"{len(writes)} ({', '.join(f'{n}x{s}' for s, n in sorted(statuses.items()))})"


def missing_from(store: Store, writes: list[Write]) -> list[Write]:
    """The 2xx writes whose key the session's record does not hold."""
    missing = []
    records: dict[str, dict[str, object]] = {}
    for write in writes:
        if not 200 <= write.status < 300:
            continue
        assert write.session_id is not None
        if write.session_id not in records:
            found = store.load(store_key(write.session_id))
            record = Record.decode(found[0]) if found else None
            records[write.session_id] = {} if record is None else loads(record.text)
        if write.key not in records[write.session_id]:
            missing.append(write)
    return missing


@pytest.fixture(params=list(WORKERS))
def serve(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[[str], str]]:
    """``serve(store_url)``: gunicorn serving ``concurrency_app``; returns its URL.

    ``serve.worker_class`` names the worker class, for the figures printed.
    """
    servers: list[ServerProcess] = []

    def start(store_url: str) -> str:
        port = free_port()
        signals = tmp_path / "signals"
        signals.mkdir()
        command = gunicorn_command(
            *("--bind", f"{HOST}:{port}", "--worker-class", request.param),
            *WORKERS[request.param],
            *("--chdir", str(TESTS), "concurrency_app:application"),
        )
        env = server_env(
            tmp_path,
            WSGI_SESSION_SECRET_KEY=SECRET,
            WSGI_SESSION_STORE=store_url,
            CONCURRENCY_SIGNALS=str(signals),
        )
        server = ServerProcess(command, env=env, cwd=tmp_path, port=port).start()
        servers.append(server)
        return server.url

    start.worker_class = request.param  # type: ignore[attr-defined]
    yield start
    for server in servers:
        server.stop()


@dataclass(frozen=True)
class KillableStore:
    """A store server of the test's own, and the URL the app reaches it by."""

    name: str
    server: MemcachedServer | RedisServer | PostgresServer
    url: str

    @property
    def persistent(self) -> bool:
        """Whether the restarted server still has what it acknowledged."""
        return self.name == "postgres"


# Short timeouts, so a request during the outage answers 503 quickly rather than hanging.
KILLABLE_URLS = {
    "memcached": "memcached://{address}?timeout=0.5&dead_timeout=0.2",
    "redis": "redis://{address}?timeout=0.5&connect_timeout=0.5",
    "postgres": "{url}?statement_timeout=0.5&pool_timeout=0.5",
}


@pytest.fixture(params=list(KILLABLE_URLS))
def killable_store(request: pytest.FixtureRequest) -> KillableStore:
    server = request.getfixturevalue(f"{request.param}_server")
    url = KILLABLE_URLS[request.param].format(address=server.address, url=server.url)
    return KillableStore(request.param, server, url)


def test_store_server_killed_and_restarted_under_load(
    serve: Callable[[str], str], killable_store: KillableStore
) -> None:
    server = killable_store.server
    url = serve(killable_store.url)
    store = store_from_url(killable_store.url)
    assert isinstance(store, Store)

    with Load(url) as load:
        began = time.monotonic()
        load.run_phase("before the kill", began)
        up_to = time.monotonic()
        before = load.between(began, up_to)
        assert missing_from(store, before) == []  # checked now: the restart empties the store

        server.kill()
        killed = time.monotonic()
        load.run_phase("outage", killed)
        restarting = time.monotonic()
        server.start()  # same port, empty
        restarted = time.monotonic()
        load.wait_for(
            "service back",
            lambda: any(w.status == 200 for w in load.between(restarted, time.monotonic())),
        )
        load.run_phase("after the restart", restarted)
    ended = time.monotonic()

    outage = load.between(killed, restarting)
    after = load.between(restarted, ended)
    transition = [w for w in load.writes if w not in before and w not in outage and w not in after]
    print(
        f"\n[{killable_store.name} SIGKILL, {serve.worker_class} workers] "
        f"before {figures(before)}; outage {figures(outage)}; "
        f"after restart {figures(after)}; straddling a fault {figures(transition)}"
    )
    assert {w.status for w in load.writes} <= {200, 503}, figures(load.writes)
    assert [w for w in outage if w.status == 200] == []
    assert len(outage) >= PER_PHASE
    assert any(w.status == 200 for w in after)
    assert missing_from(store, after) == []
    if killable_store.persistent:
        # Back at once: no pool back-off and no dead pooled connection costs a 503.
        assert {w.status for w in after} == {200}, figures(after)
        assert missing_from(store, load.writes) == []  # what it acknowledged before the kill too
    close = getattr(store, "close", None)
    if close is not None:
        close()


LOCKER = """
import sqlite3, sys, time
from pathlib import Path
connection = sqlite3.connect(sys.argv[1], isolation_level=None)
connection.execute("BEGIN EXCLUSIVE")
Path(sys.argv[2]).touch()
while not Path(sys.argv[3]).exists():
    time.sleep(0.01)
connection.execute("COMMIT")
"""


def test_sqlite_locked_by_another_process_past_the_busy_timeout(
    serve: Callable[[str], str], tmp_path: Path
) -> None:
    database = tmp_path / "sessions.db"
    store_url = f"sqlite://{database}?timeout=0.1"
    url = serve(store_url)
    store = store_from_url(store_url)
    assert isinstance(store, Store)
    locked, release = tmp_path / "locked", tmp_path / "release"

    with Load(url) as load:
        began = time.monotonic()
        load.run_phase("before the lock", began)
        locker = subprocess.Popen([sys.executable, "-c", LOCKER, str(database), locked, release])
        try:
            load.wait_for("the lock", locked.exists)
            held = time.monotonic()
            load.run_phase("lock held", held)
            releasing = time.monotonic()
        finally:
            release.touch()
            locker.wait(timeout=WAIT)
        released = time.monotonic()
        load.wait_for(
            "service back",
            lambda: any(w.status == 200 for w in load.between(released, time.monotonic())),
        )
        load.run_phase("after the release", released)
    ended = time.monotonic()

    before, during = load.between(began, held), load.between(held, releasing)
    after = load.between(released, ended)
    print(
        f"\n[sqlite exclusive lock, {serve.worker_class} workers] before {figures(before)}; "
        f"lock held {figures(during)}; "
        f"after release {figures(after)}; all {figures(load.writes)}"
    )
    assert locker.returncode == 0
    assert {w.status for w in load.writes} <= {200, 503}, figures(load.writes)
    assert [w for w in during if w.status == 200] == []
    assert len(during) >= PER_PHASE
    assert any(w.status == 200 for w in after)
    assert missing_from(store, load.writes) == []  # every 2xx write landed


def test_postgres_table_locked_past_the_statement_timeout(
    serve: Callable[[str], str], shared_postgres: PostgresServer, table: str
) -> None:
    store_url = f"{shared_postgres.url}?table={table}&statement_timeout=0.3"
    url = serve(store_url)
    store = store_from_url(store_url)
    assert isinstance(store, Store)

    with Load(url) as load:
        began = time.monotonic()
        load.run_phase("before the lock", began)
        with shared_postgres.connect() as locker, locker.transaction():
            locker.execute(f'LOCK TABLE "{table}" IN ACCESS EXCLUSIVE MODE')
            held = time.monotonic()
            load.run_phase("lock held", held)
            releasing = time.monotonic()
        released = time.monotonic()
        load.wait_for(
            "service back",
            lambda: any(w.status == 200 for w in load.between(released, time.monotonic())),
        )
        load.run_phase("after the release", released)
    ended = time.monotonic()

    before, during = load.between(began, held), load.between(held, releasing)
    after = load.between(released, ended)
    print(
        f"\n[postgres table lock, {serve.worker_class} workers] before {figures(before)}; "
        f"lock held {figures(during)}; "
        f"after release {figures(after)}; all {figures(load.writes)}"
    )
    assert {w.status for w in load.writes} <= {200, 503}, figures(load.writes)
    assert [w for w in during if w.status == 200] == []
    assert len(during) >= PER_PHASE
    assert any(w.status == 200 for w in after)
    assert missing_from(store, load.writes) == []  # every 2xx write landed
    store.close()  # type: ignore[attr-defined]

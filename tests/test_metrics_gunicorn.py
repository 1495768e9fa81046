"""A real scrape: gunicorn, two workers, the Prometheus adapter in multiprocess mode, memcached.

Traffic of every kind goes through HTTP (sessions created, read, updated, moved,
deleted; writes merged, moved and destroyed by concurrent requests, ordered by
gates; hostile cookies; a revocation; a memcached killed and restarted), then
``/metrics`` is parsed with prometheus_client's own parser and every counter is
checked against what was sent. Both workers must have answered, so the numbers
are added up across processes.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from memcached_server import MemcachedServer
from prometheus_client.parser import text_string_to_metric_families
from wsgi_server import ServerProcess, free_port, gunicorn_command, server_env

from wsgi_session.cookies import KeyRing
from wsgi_session.metrics.base import REFUSALS, REQUEST_KINDS, WRITE_OUTCOMES
from wsgi_session.record import Record
from wsgi_session.stores.memcached import MemcachedStore

TESTS = Path(__file__).resolve().parent
SECRET = "metrics-test-secret-0123456789abcdef0123456789abcdef"
WAIT = 20.0
CONFIG = """\
from wsgi_session.gunicorn import child_exit
"""


class Site:
    """The gunicorn under test, and what the test expects its metrics to say."""

    def __init__(self, server: ServerProcess, gates: Path) -> None:
        self.server = server
        self.gates = gates
        self.requests: Counter[str] = Counter()
        self.writes: Counter[str] = Counter()
        self.refused: Counter[str] = Counter()
        self.failures: Counter[tuple[str, str]] = Counter()
        self.pids: set[str] = set()

    def get(
        self, path: str, cookie: str | None = None, kind: str | None = None
    ) -> requests.Response:
        headers = {"Connection": "close"}
        if cookie is not None:
            headers["Cookie"] = f"session={cookie}"
        response = requests.get(self.server.url + path.lstrip("/"), headers=headers, timeout=WAIT)
        if kind is not None:
            assert response.status_code == 200, (path, response.status_code, response.text)
            self.requests[kind] += 1
        return response

    def race(self, slow: str, cookie: str, fast: str, gate: str) -> requests.Response:
        """``slow`` loads with ``cookie`` and waits in one worker; ``fast`` runs in the other."""
        answers: list[requests.Response] = []
        thread = threading.Thread(
            target=lambda: answers.append(self.get(f"{slow}?gate={gate}", cookie))
        )
        thread.start()
        deadline = time.monotonic() + WAIT
        while not (self.gates / f"{gate}.loaded").exists():
            assert time.monotonic() < deadline, "the slow request never loaded its session"
            time.sleep(0.01)
        fast_answer = self.get(fast, cookie)
        (self.gates / f"{gate}.go").touch()
        thread.join(WAIT)
        assert answers and answers[0].status_code == 200, answers
        assert fast_answer.status_code == 200, fast_answer.text
        return fast_answer

    def scrape(self) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
        text = requests.get(self.server.url + "metrics", timeout=WAIT).text
        samples: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                labels = tuple(sorted(sample.labels.items()))
                samples.setdefault(sample.name, {})[labels] = sample.value
        return samples


def cookie_of(response: requests.Response) -> str:
    header = response.headers.get("Set-Cookie", "")
    assert header.startswith("session="), response.headers
    return header.split(";", 1)[0][len("session=") :]


def counted(
    samples: dict[str, dict[tuple[tuple[str, str], ...], float]], name: str
) -> Counter[str]:
    return Counter(
        {
            dict(labels).popitem()[1]: value
            for labels, value in samples.get(name, {}).items()
            if value
        }
    )


@pytest.fixture
def site(tmp_path: Path, memcached_server: MemcachedServer) -> Iterator[Site]:
    directory = tmp_path / "prometheus"
    directory.mkdir()
    gates = tmp_path / "gates"
    gates.mkdir()
    config = tmp_path / "gunicorn.conf.py"
    config.write_text(CONFIG)
    port = free_port()
    server = ServerProcess(
        gunicorn_command(
            "--config",
            str(config),
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            "2",
            "--worker-class",
            "sync",
            "--chdir",
            str(TESTS),
            "metrics_app:application",
        ),
        env=server_env(
            tmp_path,
            WSGI_SESSION_SECRET_KEY=SECRET,
            WSGI_SESSION_STORE=f"memcached://{memcached_server.address}",
            WSGI_SESSION_OWNER_KEY="user",
            WSGI_SESSION_METRICS="prometheus",
            PROMETHEUS_MULTIPROC_DIR=str(directory),
            METRICS_TEST_GATES=str(gates),
        ),
        cwd=tmp_path,
        port=port,
    )
    server.start()
    try:
        yield Site(server, gates)
    finally:
        server.stop()


def planted_expired_cookie(memcached: MemcachedServer) -> str:
    """A signed id whose record memcached still holds, though its session timed out."""
    session_id = "E" * 43
    old = time.time() - 30 * 86400
    store = MemcachedStore(memcached.address)
    from wsgi_session.backends.slots import store_key

    store.save(store_key(session_id), Record(old, old, False, None, '{"n":1}').encode(), 3600)
    store.close()
    return KeyRing(SECRET).signer("wsgi_session.id").sign(session_id)


def test_the_scrape_adds_up_every_event_of_both_workers(
    site: Site, memcached_server: MemcachedServer
) -> None:
    # Every kind of request, write and refusal, each counted in ``site`` as it is sent.
    for _ in range(4):
        site.get("/untouched", kind="untouched")
    a = cookie_of(site.get("/write", kind="created"))
    site.writes["written"] += 1
    for _ in range(6):
        site.get("/read", a, kind="read")
    for _ in range(3):
        site.get("/write", a, kind="updated")
        site.writes["written"] += 1
    a = cookie_of(site.get("/login?user=alice", a, kind="moved"))
    site.writes["written"] += 1
    b = cookie_of(site.get("/write", kind="created"))
    site.get("/logout", b, kind="deleted")
    site.writes["written"] += 2

    # Concurrent requests on one session, one in each worker.
    site.race("/slow-write", a, "/write", "merge")
    site.requests["updated"] += 2
    site.writes.update(["written", "merged"])
    a = cookie_of(site.race("/slow-write", a, "/login?user=alice", "move"))
    site.requests.update(["updated", "moved"])
    site.writes.update(["written", "moved"])
    c = cookie_of(site.get("/write", kind="created"))
    site.writes["written"] += 1
    site.race("/slow-write", c, "/logout", "destroy")
    site.requests.update(["updated", "deleted"])
    site.writes.update(["written", "destroyed"])

    # Hostile cookies: each a read of a fresh session, counted by reason.
    signer = KeyRing(SECRET).signer("wsgi_session.id")
    body, signature = a.rsplit(".", 1)
    for cookie, reason in [
        ("hello", "unsigned"),
        ("", "unsigned"),
        (body + "." + signature[::-1], "bad_signature"),
        (signer.sign("x" * 43)[:-3] + "abc", "bad_signature"),
        ('"' + a + '"', "not_canonical"),
        (body[:20] + "." + signature, "not_canonical"),
        (signer.sign("u" * 43), "unknown_id"),
        (planted_expired_cookie(memcached_server), "expired"),
    ]:
        site.get("/read", cookie, kind="read")
        site.refused[reason] += 1

    # A revocation: two of bob's sessions.
    site.get("/login?user=bob", kind="created")
    site.get("/login?user=bob", kind="created")
    site.writes["written"] += 2
    assert site.get("/revoke?user=bob", kind="untouched").text == "2"

    # memcached killed: loads and writes answer 503; it comes back empty.
    memcached_server.kill()
    for _ in range(3):
        assert site.get("/read", a).status_code == 503
        site.failures["load", "503"] += 1
    for _ in range(2):
        assert site.get("/write").status_code == 503
        site.failures["write", "503"] += 1
    site.get("/untouched", kind="untouched")
    memcached_server.start()
    site.get("/read", a, kind="read")  # its record went with the old memcached
    site.refused["unknown_id"] += 1

    deadline = time.monotonic() + WAIT
    while True:  # the other worker publishes within its interval (one second)
        samples = site.scrape()
        requests_seen = counted(samples, "wsgi_session_requests_total")
        if requests_seen == site.requests or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert requests_seen == site.requests
    assert counted(samples, "wsgi_session_writes_total") == site.writes
    assert counted(samples, "wsgi_session_cookies_refused_total") == site.refused
    failures = Counter(
        {
            (dict(labels)["operation"], dict(labels)["answer"]): value
            for labels, value in samples.get("wsgi_session_store_failures_total", {}).items()
            if value
        }
    )
    assert failures == site.failures
    assert samples["wsgi_session_revoked_sessions_total"][()] == 2
    # The store calls are timed: every load, by store and operation, in the histogram.
    loads = (("operation", "load"), ("store", "memcached"))
    count = samples["wsgi_session_store_seconds_count"][loads]
    assert count >= site.requests["read"] + site.requests["updated"]
    assert (
        samples["wsgi_session_store_seconds_bucket"][tuple(sorted((*loads, ("le", "+Inf"))))]
        == count
    )
    # Bounded labels only, and both workers wrote their files.
    for name in ("wsgi_session_requests_total", "wsgi_session_writes_total"):
        for labels in samples[name]:
            assert dict(labels).popitem()[1] in (*REQUEST_KINDS, *WRITE_OUTCOMES)
    for labels in samples["wsgi_session_cookies_refused_total"]:
        assert dict(labels)["reason"] in REFUSALS
    directory = Path(site.server.env["PROMETHEUS_MULTIPROC_DIR"])
    assert len(list(directory.glob("counter_*.db"))) == 2  # one file per worker

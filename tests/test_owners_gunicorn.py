"""Per-user sessions across gunicorn worker processes, on SQLite, memcached, Redis, PostgreSQL.

One user logs in from several clients; one of them signs the others out
while their requests are in flight on other workers. None of those requests
may save, and none of their sessions may live on, on any worker.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from helpers import SetCookie
from test_concurrency_gunicorn import GATE, WAIT, Site, store_url  # noqa: F401  # a fixture

CLIENTS = 4  # logged-in clients besides the one that revokes
READS = 12  # reads of each revoked cookie, spread over the workers


@pytest.fixture
def owners_site(store_url: str, tmp_path: Path) -> Iterator[Site]:  # noqa: F811
    site = Site(
        store_url,
        "sync",
        tmp_path,
        WSGI_SESSION_OWNER_KEY="user",
        WSGI_SESSION_RECORD_CLIENT="true",
    )
    site.server.start()
    try:
        yield site
    finally:
        site.stop()


def get_json(site: Site, path: str, cookie: SetCookie) -> dict[str, object]:
    response = requests.get(
        site.server.url + path.lstrip("/"),
        headers={"Connection": "close", "Cookie": f"{cookie.name}={cookie.value}"},
        timeout=WAIT,
    )
    assert response.status_code == 200, response.text
    body: dict[str, object] = response.json()
    return body


def test_revoking_on_one_worker_ends_the_sessions_in_flight_on_the_others(
    owners_site: Site,
) -> None:
    site = owners_site
    logins = [site.get("/login?user=alice") for _ in range(CLIENTS + 1)]
    me, *others = [answer.cookies[0] for answer in logins]
    site.get("/login?user=bob")  # another user's session is left alone
    listed = get_json(site, "/sessions", me)["sessions"]
    assert isinstance(listed, list) and len(listed) == CLIENTS + 1
    assert sum(entry["current"] for entry in listed) == 1
    assert {entry["address"] for entry in listed} == {"127.0.0.0/24"}

    # Half the others update their session, half log in again (a new id):
    # each loads its session, then waits at the gate.
    writers = [
        site.pool.submit(
            site.get, f"/write?key=late{index}&gate={GATE}&regenerate={index % 2}", cookie
        )
        for index, cookie in enumerate(others)
    ]
    site.wait_loaded([f"late{index}" for index in range(CLIENTS)], CLIENTS)
    revoked = get_json(site, "/revoke-others", me)["revoked"]
    assert revoked == CLIENTS
    site.open_gate()

    for future in writers:
        answer = future.result(timeout=WAIT)
        (cookie,) = answer.cookies
        assert cookie.expires_now, answer  # dropped: a logout, not a save
    pids = set()
    for cookie in others:
        assert site.stored(cookie) is None
        for _ in range(READS):
            answer = site.get("/read", cookie)
            assert answer.data == {}
            pids.add(answer.pid)
    assert len(pids) > 1  # seen by several workers, not only the one that revoked
    listed = get_json(site, "/sessions", me)["sessions"]
    assert listed == [{"current": True, "agent": listed[0]["agent"], "address": "127.0.0.0/24"}]  # type: ignore[index]
    assert site.stored(me) == {"user": "alice"}

"""Session lifecycle over HTTP: saving only on change, refresh, expiry, regenerate, destroy."""

from __future__ import annotations

from typing import Any

import pytest
from helpers import (
    START,
    CountingStore,
    FakeClock,
    make,
    one_cookie,
    set_cookies,
    store_key,
    stored_data,
    stored_record,
)
from werkzeug.test import Client

from wsgi_session import MemoryStore, Session


def append(session: Session) -> None:
    session["cart"].append(3)


def nested(session: Session) -> None:
    session["profile"]["tags"].add("admin")


ROUTES: dict[str, Any] = {
    "append": append,
    "nested": nested,
    "profile": lambda s: s.update(profile={"tags": {"user"}}),
    "del": lambda s: s.__delitem__("user"),
    "same": lambda s: s.update(user=s["user"]),
    "force": lambda s: setattr(s, "modified", True),
    "read_then_force": lambda s: (s.get("user"), setattr(s, "modified", True)),
    "short": lambda s: setattr(s, "idle_timeout", 30),
    "login": lambda s: (s.regenerate(), s.update(user="bob")),
    "logout_then_set": lambda s: (s.destroy(), s.update(theme="dark")),
}


# -- saving only on change ---------------------------------------------------


def test_set_saves_and_sets_the_cookie() -> None:
    client, _, store = make(ROUTES)

    response = client.get("/set")

    cookie = one_cookie(response)
    assert store.calls["save"] == 1
    assert stored_data(store, cookie.session_id) == {"user": "alice"}
    assert client.get("/read").text == "{'user': 'alice'}"


def test_top_level_delete_is_saved() -> None:
    client, _, store = make(ROUTES)
    cookie = one_cookie(client.get("/set"))
    client.get("/set2")

    response = client.get("/del")

    assert store.calls["save"] == 3
    # A write re-sends the cookie (as Flask and Django do), under the same id.
    assert one_cookie(response).session_id == cookie.session_id
    assert stored_data(store, cookie.session_id) == {"cart": [1, 2]}


@pytest.mark.parametrize(
    ("setup", "mutate", "expected"),
    [
        ("set2", "append", {"cart": [1, 2, 3]}),
        ("profile", "nested", {"profile": {"tags": {"user", "admin"}}}),
    ],
)
def test_nested_mutation_is_detected_and_saved(
    setup: str, mutate: str, expected: dict[str, Any]
) -> None:
    client, _, store = make(ROUTES)
    cookie = one_cookie(client.get(f"/{setup}"))

    client.get(f"/{mutate}")

    assert store.calls["save"] == 2
    assert stored_data(store, cookie.session_id) == expected


def test_unchanged_session_is_not_rewritten() -> None:
    client, _, store = make(ROUTES)
    client.get("/set")

    for _ in range(3):
        response = client.get("/read")
        assert response.text == "{'user': 'alice'}"
        assert set_cookies(response) == []

    assert store.calls["save"] == 1
    assert store.calls["load"] == 3


@pytest.mark.parametrize("route", ["force", "read_then_force"])
def test_modified_flag_forces_a_save(route: str) -> None:
    client, _, store = make(ROUTES)
    cookie = one_cookie(client.get("/set"))

    client.get(f"/{route}")

    assert store.calls["save"] == 2
    assert stored_data(store, cookie.session_id) == {"user": "alice"}


def test_new_session_left_empty_creates_nothing() -> None:
    client, _, store = make(ROUTES)

    for route in ("read", "id", "clear"):
        response = client.get(f"/{route}")
        assert response.status_code == 200
        assert set_cookies(response) == []

    assert store.calls["save"] == 0
    assert len(store.inner) == 0


def test_clearing_every_key_empties_the_record_and_expires_the_cookie() -> None:
    client, _, store = make(ROUTES)
    cookie = one_cookie(client.get("/set"))

    response = client.get("/clear")

    expired = one_cookie(response)
    assert expired.name == "session" and expired.expires_now
    # Emptied by compare-and-set rather than deleted, so a concurrent request's
    # keys would be merged in (test_concurrency_merge); an empty record is no session.
    assert stored_record(store, cookie.session_id) is not None
    assert stored_data(store, cookie.session_id) is None
    assert client.get_cookie("session") is None
    replay = Client(client.application, use_cookies=False)
    answer = replay.get("/id", headers={"Cookie": f"session={cookie.value}"})
    assert cookie.session_id not in answer.get_data(as_text=True)


# -- refresh of unchanged sessions -------------------------------------------


def test_stale_unchanged_session_is_rewritten_once_with_new_access_time() -> None:
    clock = FakeClock()
    client, _, store = make(ROUTES, idle_timeout=100, refresh_interval=10, clock=clock)
    cookie = one_cookie(client.get("/set"))

    clock.advance(5)
    client.get("/read")
    assert store.calls["save"] == 1  # younger than the refresh interval

    clock.advance(6)
    client.get("/read")
    assert store.calls["save"] == 2
    record = stored_record(store, cookie.session_id)
    assert record is not None
    assert (record.created, record.accessed) == (START, START + 11)

    client.get("/read")
    assert store.calls["save"] == 2  # refreshed once, not on every request


def test_refresh_keeps_an_active_reader_logged_in() -> None:
    clock = FakeClock()
    client, _, _ = make(ROUTES, idle_timeout=100, refresh_interval=10, clock=clock)
    client.get("/set")

    for _ in range(5):  # 300 seconds of reading, never idle for 100
        clock.advance(60)
        assert client.get("/read").text == "{'user': 'alice'}"


def test_stale_permanent_session_gets_a_refreshed_cookie() -> None:
    clock = FakeClock()
    client, _, store = make(ROUTES, idle_timeout=100, refresh_interval=10, clock=clock)
    client.get("/set")
    first = one_cookie(client.get("/permanent"))
    assert first.attrs["max-age"] == "100"

    clock.advance(5)
    assert set_cookies(client.get("/read")) == []

    clock.advance(20)
    refreshed = one_cookie(client.get("/read"))
    assert refreshed.value == first.value
    assert refreshed.attrs["max-age"] == "100"
    assert "expires" in refreshed.attrs
    assert store.calls["save"] == 3


def test_refresh_each_request_resends_a_permanent_cookie() -> None:
    client, _, store = make(ROUTES, refresh_each_request=True)
    client.get("/set")
    client.get("/permanent")

    for _ in range(2):
        assert "max-age" in one_cookie(client.get("/read")).attrs
    assert store.calls["save"] == 2


# -- expiry from the record's own timestamps ---------------------------------


def expiring(**options: Any) -> tuple[Any, FakeClock, CountingStore]:
    """The middleware on a fake clock; the store on the real one, so its TTL never passes."""
    clock = FakeClock()
    client, _, store = make(ROUTES, store=CountingStore(MemoryStore()), clock=clock, **options)
    return client, clock, store


def test_idle_timeout_is_enforced_even_while_the_store_keeps_the_record() -> None:
    client, clock, store = expiring(idle_timeout=100)
    cookie = one_cookie(client.get("/set"))

    clock.advance(99)
    assert client.get("/read").text == "{'user': 'alice'}"

    clock.advance(100)
    assert stored_record(store, cookie.session_id) is not None  # the store still has it
    response = client.get("/read")
    assert response.text == "{}"
    assert one_cookie(response).expires_now

    fresh = one_cookie(client.get("/set2"))
    assert fresh.session_id != cookie.session_id
    assert stored_data(store, fresh.session_id) == {"cart": [1, 2]}


def test_per_session_idle_timeout_overrides_the_default() -> None:
    client, clock, store = expiring(idle_timeout=100)
    cookie = one_cookie(client.get("/set"))
    client.get("/short")

    clock.advance(31)

    assert stored_record(store, cookie.session_id) is not None
    assert client.get("/read").text == "{}"


def test_absolute_timeout_ends_even_an_active_session() -> None:
    client, clock, store = expiring(idle_timeout=100, absolute_timeout=250)
    cookie = one_cookie(client.get("/set"))

    for _ in range(4):  # written every 60 seconds: never idle
        clock.advance(60)
        assert client.get("/set2").status_code == 200
    assert stored_data(store, cookie.session_id) == {"user": "alice", "cart": [1, 2]}

    clock.advance(11)  # 251 seconds after creation
    assert client.get("/read").text == "{}"


def test_permanent_cookie_max_age_respects_absolute_timeout() -> None:
    client, clock, _ = expiring(idle_timeout=1000, absolute_timeout=250)
    client.get("/set")
    clock.advance(200)

    cookie = one_cookie(client.get("/permanent"))

    assert cookie.attrs["max-age"] == "50"


# -- permanent ---------------------------------------------------------------


def test_default_cookie_dies_with_the_browser() -> None:
    client, _, _ = make(ROUTES)

    cookie = one_cookie(client.get("/set"))

    assert "max-age" not in cookie.attrs
    assert "expires" not in cookie.attrs


def test_permanent_cookie_carries_the_idle_timeout() -> None:
    client, _, store = make(ROUTES, idle_timeout=3600)
    client.get("/set")

    cookie = one_cookie(client.get("/permanent"))

    assert cookie.attrs["max-age"] == "3600"
    assert "expires" in cookie.attrs
    record = stored_record(store, cookie.session_id)
    assert record is not None and record.permanent
    # Later writes keep sending the long-lived cookie.
    assert one_cookie(client.get("/set2")).attrs["max-age"] == "3600"


def test_making_a_session_non_permanent_resends_a_browser_session_cookie() -> None:
    client, _, store = make(
        {**ROUTES, "transient": lambda s: setattr(s, "permanent", False)}, idle_timeout=3600
    )
    client.get("/set")
    permanent = one_cookie(client.get("/permanent"))

    transient = one_cookie(client.get("/transient"))

    assert transient.session_id == permanent.session_id
    assert transient.value == f"{permanent.session_id}.b.{transient.value.rsplit('.', 1)[1]}"
    assert "max-age" not in transient.attrs and "expires" not in transient.attrs
    record = stored_record(store, transient.session_id)
    assert record is not None and not record.permanent


def test_permanent_cookie_uses_the_per_session_idle_timeout() -> None:
    client, _, _ = make(ROUTES, idle_timeout=3600)
    client.get("/set")
    client.get("/permanent")

    cookie = one_cookie(client.get("/short"))

    assert cookie.attrs["max-age"] == "30"


# -- regenerate ----------------------------------------------------------------


def test_regenerate_moves_the_data_to_a_new_id() -> None:
    client, _, store = make(ROUTES)
    old = one_cookie(client.get("/set"))

    new = one_cookie(client.get("/regenerate"))

    assert new.session_id != old.session_id
    assert stored_data(store, new.session_id) == {"user": "alice"}
    assert stored_data(store, old.session_id) is None
    retired = stored_record(store, old.session_id)
    assert retired is not None and retired.forward == store_key(new.session_id)
    assert b"alice" not in store.inner.load(store_key(old.session_id))[0]  # type: ignore[index]
    assert client.get("/read").text == "{'user': 'alice'}"


def test_old_cookie_after_regenerate_gets_a_fresh_empty_session() -> None:
    client, _, store = make(ROUTES)
    old = one_cookie(client.get("/set"))
    client.get("/regenerate")

    client.set_cookie("session", old.value)
    response = client.get("/read")

    assert response.text == "{}"
    new = one_cookie(client.get("/set2"))
    assert new.session_id != old.session_id
    assert stored_data(store, new.session_id) == {"cart": [1, 2]}


def test_retired_record_vanishes_after_a_short_while() -> None:
    clock = FakeClock()
    client, _, store = make(ROUTES, store=CountingStore(MemoryStore(clock=clock)), clock=clock)
    old = one_cookie(client.get("/set"))
    client.get("/regenerate")
    retired = stored_record(store, old.session_id)
    assert retired is not None and retired.forward is not None  # a forward, for 5 minutes

    clock.advance(301)

    assert stored_record(store, old.session_id) is None


def test_memory_store_load_drops_an_expired_record_and_keeps_a_live_one() -> None:
    clock = FakeClock()
    store = MemoryStore(clock=clock)
    store.save("short", b"1 0 0 0 0 {}", 10)
    store.save("long", b"1 0 0 0 0 {}", 100)

    clock.advance(10)

    assert store.load("short") is None  # read without the lock, dropped under it
    assert store.purge_expired() == 0  # the load removed it already
    assert store.load("long") == (b"1 0 0 0 0 {}", 2)
    assert len(store) == 1


def test_memory_store_save_treats_an_expired_record_as_gone() -> None:
    clock = FakeClock()
    store = MemoryStore(clock=clock)
    store.save("key", b"1 0 0 0 0 {}", 10)
    _, version = store.load("key") or (b"", None)

    clock.advance(10)

    # Its version no longer matches anything: the session ended with the record.
    assert store.save("key", b'1 0 0 0 0 {"a":1}', 10, version) is False
    assert store.load("key") is None
    # A create (no version) takes the place of an expired record.
    store.save("new", b"1 0 0 0 0 {}", 10)
    clock.advance(10)
    assert store.save("new", b'1 0 0 0 0 {"b":2}', 10) is True
    assert store.load("new") == (b'1 0 0 0 0 {"b":2}', 3)


def test_regenerate_on_a_new_session_stores_one_record() -> None:
    client, _, store = make(ROUTES)

    cookie = one_cookie(client.get("/login"))

    assert stored_data(store, cookie.session_id) == {"user": "bob"}
    assert len(store.inner) == 1


# -- destroy -------------------------------------------------------------------


def test_destroy_deletes_the_record_and_expires_the_cookie_with_same_attributes() -> None:
    client, _, store = make(
        ROUTES, cookie_domain="example.com", cookie_path="/app", cookie_samesite="Strict"
    )
    old = one_cookie(client.get("/set", base_url="https://example.com/app/"))

    response = client.get("/destroy", base_url="https://example.com/app/")

    expired = one_cookie(response)
    assert expired.name == old.name
    assert expired.value == ""
    assert expired.expires_now
    assert {k: v for k, v in expired.attrs.items() if k not in ("max-age", "expires")} == (
        old.attrs
    )
    assert stored_record(store, old.session_id) is None
    assert len(store.inner) == 0


def test_data_set_after_destroy_starts_a_new_session_under_a_new_id() -> None:
    client, _, store = make(ROUTES)
    old = one_cookie(client.get("/set"))

    new = one_cookie(client.get("/logout_then_set"))

    assert new.session_id != old.session_id
    assert not new.expires_now
    assert stored_record(store, old.session_id) is None
    assert stored_data(store, new.session_id) == {"theme": "dark"}
    assert client.get("/read").text == "{'theme': 'dark'}"


def test_old_cookie_after_destroy_gets_a_fresh_session() -> None:
    client, _, _ = make(ROUTES)
    old = one_cookie(client.get("/set"))
    client.get("/destroy")

    client.set_cookie("session", old.value)

    assert client.get("/read").text == "{}"


@pytest.mark.parametrize("seconds", [0, -5, 1.5, True, "60"])
def test_a_bad_per_session_idle_timeout_is_refused(seconds: Any) -> None:
    def set_timeout(session: Session) -> None:
        session.idle_timeout = seconds

    client, _, store = make({"timeout": set_timeout})

    with pytest.raises(ValueError, match="idle_timeout must be a whole number of seconds > 0"):
        client.get("/timeout")
    assert store.calls["save"] == 0

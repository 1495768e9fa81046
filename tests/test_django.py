"""The Django adapter, driven through the example project's middleware-wrapped WSGI app."""

from __future__ import annotations

import gc
import hashlib
import json
import logging
import re
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.core.wsgi import get_wsgi_application
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.test import override_settings
from django.urls import path
from django_setup import PASSWORD, USER, drop_unused_middlewares, example_settings
from helpers import SECRET, START, FakeClock, SetCookie, one_cookie, set_cookies
from werkzeug.test import Client, TestResponse

from wsgi_session import MemoryStore, Store
from wsgi_session.backends.cookie import CookieStore
from wsgi_session.config import store_from_url
from wsgi_session.django import DjangoSession, make_middleware
from wsgi_session.django import test as django_test
from wsgi_session.record import Record
from wsgi_session.serialization import EMPTY, loads
from wsgi_session.stores.sqlite import SQLiteStore

COOKIE = "sessionid"
TWO_WEEKS = 14 * 24 * 3600
LOGGED_IN = "_auth_user_id"

# -- test-only views, mounted under /t/ next to the example's URLs -------------

Action = Callable[[DjangoSession], Any]
DEADLINE = datetime.fromtimestamp(START + 3 * 3600, timezone.utc)


def expiry(value: int | datetime | timedelta | None) -> Action:
    def action(session: DjangoSession) -> dict[str, Any]:
        session["data"] = 1
        session.set_expiry(value)
        return {
            "age": session.get_expiry_age(),
            "browser_close": session.get_expire_at_browser_close(),
            "date": session.get_expiry_date().isoformat(),
        }

    return action


def negative_expiry(session: DjangoSession) -> str:
    try:
        session.set_expiry(-5)
    except ValueError as exc:
        return str(exc)
    return "accepted"


def check_test_cookie(session: DjangoSession) -> bool:
    worked = session.test_cookie_worked()
    if worked:
        session.delete_test_cookie()
    return worked


def mapping_api(session: DjangoSession) -> dict[str, Any]:
    session.update({"a": 1, "b": [1]})
    session["b"].append(2)
    return {
        "setdefault": [session.setdefault("a", 5), session.setdefault("c", 3)],
        "pop": [session.pop("c"), session.pop("missing", "default")],
        "contains": ["a" in session, "c" in session],
        "has_key": session.has_key("b"),
        "keys": sorted(session.keys()),
        "values": sorted(map(str, session.values())),
        "items": sorted((key, str(value)) for key, value in session.items()),
        "modified": session.modified,
        "accessed": session.accessed,
        "empty": session.is_empty(),
        "key_is_id": session.session_key == session.session.id,
    }


def pop_missing(session: DjangoSession) -> str:
    try:
        session.pop("missing")
    except KeyError:
        return "KeyError"
    return "no error"


ACTIONS: dict[str, Action] = {
    "read": lambda session: session.load(),
    "key": lambda session: session.session_key,
    "empty": lambda session: session.is_empty(),
    "set": lambda session: session.update({"data": 1}),
    "flush": lambda session: session.flush(),
    "flush-and-set": lambda session: (session.flush(), session.update({"after": 1})),
    "cycle": lambda session: session.cycle_key(),
    "clear": lambda session: session.clear(),
    "save": lambda session: session.save(),
    "cookie-age": lambda session: session.get_session_cookie_age(),
    "expiry-int": expiry(3600),
    "expiry-zero": expiry(0),
    "expiry-delta": expiry(timedelta(hours=2)),
    "expiry-date": expiry(DEADLINE),
    "expiry-none": expiry(None),
    "expiry-negative": negative_expiry,
    "set-test-cookie": lambda session: session.set_test_cookie(),
    "test-cookie": check_test_cookie,
    "mapping": mapping_api,
    "pop-missing": pop_missing,
}


def run(request: HttpRequest, name: str) -> HttpResponse:
    assert isinstance(request.session, DjangoSession)
    return JsonResponse({"result": ACTIONS[name](request.session)})


def plain(request: HttpRequest) -> HttpResponse:
    return HttpResponse("no session here")


async def async_counter(request: HttpRequest) -> HttpResponse:
    session = request.session
    count = await session.aget("count", 0) + 1
    await session.aset("count", count)
    if await session.ahas_key("cycle"):
        await session.acycle_key()
    if count == 3:
        await session.aflush()
    return HttpResponse(str(count))


urlpatterns = [  # the example's own URLs are added once it is importable
    path("t/plain/", plain),
    path("t/async/", async_counter),
    path("t/<str:name>/", run),
]

# -- Django, configured once for this module ---------------------------------


@pytest.fixture(scope="module", autouse=True)
def django_project(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The example project's settings; its user table and sessions in a temporary directory."""
    with example_settings(tmp_path_factory, __name__) as files:
        yield files
    # Test responses hold lazy objects (resolver_match) in reference cycles; left for
    # later, any code that walks gc.get_objects() would evaluate them out of context.
    gc.collect()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(params=["memory", "sqlite"])
def store(request: pytest.FixtureRequest, clock: FakeClock, tmp_path: Path) -> Iterator[Store]:
    if request.param == "memory":
        yield MemoryStore(clock=clock)
        return
    sqlite = SQLiteStore(tmp_path / "sessions.sqlite3", clock=clock)
    yield sqlite
    sqlite.close()


@pytest.fixture
def make_client(store: Store, clock: FakeClock) -> Callable[..., Client]:
    """A client for ``make_middleware(get_wsgi_application())`` with the current settings."""

    def make(**options: Any) -> Client:
        return Client(make_middleware(get_wsgi_application(), store=store, clock=clock, **options))

    return make


@pytest.fixture
def client(make_client: Callable[..., Client]) -> Client:
    return make_client()


def stored(store: Store, session_id: str) -> dict[str, Any] | None:
    """The data of the live session record for ``session_id``, if there is one."""
    found = store.load(hashlib.sha256(session_id.encode("ascii")).hexdigest())
    record = Record.decode(found[0]) if found else None
    if record is None or record.forward is not None or record.text == EMPTY:
        return None  # an emptied record loads as no session
    return loads(record.text)


def result(response: TestResponse) -> Any:
    assert response.status_code == 200, response.text
    return json.loads(response.text)["result"]


def session_cookie(response: TestResponse) -> SetCookie:
    cookie = one_cookie(response)
    assert cookie.name == COOKIE
    return cookie


def csrf_token(response: TestResponse) -> str:
    found = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', response.text)
    assert found, response.text
    return found.group(1)


def log_in(client: Client) -> tuple[SetCookie, SetCookie]:
    """Log in through the login view; the anonymous and the logged-in session cookies."""
    form = client.get("/login/")
    anonymous = session_cookie(form)  # CSRF_USE_SESSIONS: the form's CSRF secret is in it
    response = client.post(
        "/login/",
        data={"username": USER, "password": PASSWORD, "csrfmiddlewaretoken": csrf_token(form)},
    )
    assert response.status_code == 302, response.text
    assert response.location == "/"
    return anonymous, session_cookie(response)


# -- auth, messages, CSRF ----------------------------------------------------


def test_the_owner_follows_django_auth_login_and_logout(store: Store, clock: FakeClock) -> None:
    from django.contrib.auth.models import User

    middleware = make_middleware(get_wsgi_application(), store=store, clock=clock)
    user_id = User.objects.get(username=USER).pk
    laptop, phone = Client(middleware), Client(middleware)
    log_in(laptop)
    _, logged_in = log_in(phone)
    assert len(middleware.sessions.of(user_id)) == 2

    home = phone.get("/")
    out = phone.post("/logout/", data={"csrfmiddlewaretoken": csrf_token(home)})
    assert out.status_code == 302
    assert stored(store, logged_in.session_id) is None
    (left,) = middleware.sessions.of(user_id)
    assert not left.current
    assert middleware.sessions.revoke(user_id) == 1
    assert laptop.get("/").status_code == 302  # signed out: back to the login page


def test_the_example_signs_the_other_sessions_out_on_a_password_change(
    store: Store, clock: FakeClock
) -> None:
    from django.contrib.auth.models import User

    User.objects.create_user("carol", password=PASSWORD)
    middleware = make_middleware(get_wsgi_application(), store=store, clock=clock)
    laptop, phone = Client(middleware), Client(middleware)
    for browser in (laptop, phone):
        form = browser.get("/login/")
        browser.post(
            "/login/",
            data={
                "username": "carol",
                "password": PASSWORD,
                "csrfmiddlewaretoken": csrf_token(form),
            },
        )
    home = laptop.get("/")
    changed = laptop.post(
        "/password/",
        data={
            "old_password": PASSWORD,
            "new_password1": "a-new-password-4567",
            "new_password2": "a-new-password-4567",
            "csrfmiddlewaretoken": csrf_token(home),
        },
    )
    assert changed.status_code == 302
    page = laptop.get("/")
    assert "Password changed; 1 other session(s) signed out." in page.text
    assert phone.get("/").status_code == 302  # signed out at once
    User.objects.filter(username="carol").delete()


def test_login_message_logout(client: Client, store: Store) -> None:
    response = client.get("/")
    assert response.status_code == 302
    assert response.location == "/login/?next=/"
    assert set_cookies(response) == []  # looked at, still empty: nothing stored or sent

    anonymous, logged_in = log_in(client)

    # A new id on login: the id the client held before (maybe planted) is worthless.
    assert logged_in.session_id != anonymous.session_id
    assert stored(store, anonymous.session_id) is None
    data = stored(store, logged_in.session_id)
    assert data is not None and LOGGED_IN in data
    assert logged_in.attrs["max-age"] == str(TWO_WEEKS)  # SESSION_EXPIRE_AT_BROWSER_CLOSE=False
    assert "httponly" in logged_in.attrs and logged_in.attrs["path"] == "/"
    assert logged_in.attrs["samesite"] == "Lax"

    home = client.get("/")
    assert home.status_code == 200
    assert "Hello, alice" in home.text
    noted = client.post("/note/", data={"text": "Saved!", "csrfmiddlewaretoken": csrf_token(home)})
    assert noted.status_code == 302

    assert '<p class="message">Saved!</p>' in client.get("/").text
    home = client.get("/")
    assert "Saved!" not in home.text  # shown exactly once
    assert '<span id="visits">3</span>' in home.text

    out = client.post("/logout/", data={"csrfmiddlewaretoken": csrf_token(home)})
    assert out.status_code == 302
    assert out.location == "/login/"
    assert session_cookie(out).expires_now
    assert stored(store, logged_in.session_id) is None

    replay = Client(client.application)
    replay.set_cookie(COOKIE, logged_in.value)
    response = replay.get("/")
    assert response.status_code == 302
    assert response.location == "/login/?next=/"


def test_cookie_store_logs_in_flashes_and_logs_out(clock: FakeClock) -> None:
    client = Client(make_middleware(get_wsgi_application(), store=CookieStore(), clock=clock))
    anonymous, logged_in = log_in(client)
    assert logged_in.value != anonymous.value
    home = client.get("/")
    assert "Hello, alice" in home.text
    client.post("/note/", data={"text": "In the cookie", "csrfmiddlewaretoken": csrf_token(home)})
    home = client.get("/")
    assert '<p class="message">In the cookie</p>' in home.text
    out = client.post("/logout/", data={"csrfmiddlewaretoken": csrf_token(home)})
    assert session_cookie(out).expires_now
    assert client.get("/").status_code == 302


def test_post_without_csrf_token_is_refused(client: Client) -> None:
    client.get("/login/")
    response = client.post("/login/", data={"username": USER, "password": PASSWORD})
    assert response.status_code == 403


def test_wrong_password_leaves_the_visitor_anonymous(client: Client, store: Store) -> None:
    form = client.get("/login/")
    anonymous = session_cookie(form)
    response = client.post(
        "/login/",
        data={"username": USER, "password": "wrong", "csrfmiddlewaretoken": csrf_token(form)},
    )
    assert response.status_code == 200
    assert set_cookies(response) == []
    data = stored(store, anonymous.session_id)
    assert data is not None and LOGGED_IN not in data


def test_logging_in_as_another_user_flushes_the_first_session(client: Client, store: Store) -> None:
    _, alice = log_in(client)
    form = client.get("/login/")
    response = client.post(
        "/login/",
        data={"username": "bob", "password": PASSWORD, "csrfmiddlewaretoken": csrf_token(form)},
    )
    bob = session_cookie(response)
    assert bob.session_id != alice.session_id
    assert stored(store, alice.session_id) is None
    data = stored(store, bob.session_id)
    assert data is not None and "visits" not in data


# -- the SessionBase API -----------------------------------------------------


def test_mapping_methods(client: Client, store: Store) -> None:
    response = client.get("/t/mapping/")
    assert result(response) == {
        "setdefault": [1, 3],
        "pop": [3, "default"],
        "contains": [True, False],
        "has_key": True,
        "keys": ["a", "b"],
        "values": ["1", "[1, 2]"],
        "items": [["a", "1"], ["b", "[1, 2]"]],
        "modified": True,
        "accessed": True,
        "empty": False,
        "key_is_id": True,
    }
    assert stored(store, session_cookie(response).session_id) == {"a": 1, "b": [1, 2]}
    assert result(client.get("/t/pop-missing/")) == "KeyError"


def test_session_key_is_none_until_there_is_data(client: Client) -> None:
    assert result(client.get("/t/key/")) is None
    assert result(client.get("/t/empty/")) is True
    cookie = session_cookie(client.get("/t/set/"))
    assert result(client.get("/t/key/")) == cookie.session_id
    assert result(client.get("/t/empty/")) is False


def test_cycle_key_keeps_the_data_under_a_new_id(client: Client, store: Store) -> None:
    first = session_cookie(client.get("/t/set/"))
    second = session_cookie(client.get("/t/cycle/"))
    assert second.session_id != first.session_id
    assert stored(store, first.session_id) is None
    assert stored(store, second.session_id) == {"data": 1}
    assert result(client.get("/t/read/")) == {"data": 1}


def test_flush_deletes_the_record_and_expires_the_cookie(client: Client, store: Store) -> None:
    first = session_cookie(client.get("/t/set/"))
    flushed = client.get("/t/flush/")
    assert session_cookie(flushed).expires_now
    assert store.load(hashlib.sha256(first.session_id.encode()).hexdigest()) is None  # deleted


def test_django_cache_middleware_never_shares_a_session_page(
    make_client: Callable[..., Client],
) -> None:
    middleware = [
        "django.middleware.cache.UpdateCacheMiddleware",
        "wsgi_session.django.SessionMiddleware",
        "django.middleware.cache.FetchFromCacheMiddleware",
    ]
    caches = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    with override_settings(MIDDLEWARE=middleware, CACHES=caches, CACHE_MIDDLEWARE_SECONDS=60):
        first, second = make_client(), make_client()
        created = first.get("/t/set/")  # a new session: the response sets a cookie
        other = second.get("/t/set/")  # another visitor, no cookie either
        read = first.get("/t/read/")
        stranger = second.get("/t/read/")

    # Django's view of the response already varies on Cookie and, when a cookie
    # is being set, is private: the cache must not hand it to the next visitor.
    assert "private" in created.headers["Cache-Control"]
    assert session_cookie(other).session_id != session_cookie(created).session_id
    assert "Cookie" in read.headers["Vary"]
    assert result(stranger) == {"data": 1}  # its own session, not the first visitor's
    assert session_cookie(other).session_id != session_cookie(created).session_id


def test_data_set_after_flush_starts_a_new_permanent_session(client: Client, store: Store) -> None:
    first = session_cookie(client.get("/t/set/"))
    second = session_cookie(client.get("/t/flush-and-set/"))
    assert second.session_id != first.session_id
    assert second.attrs["max-age"] == str(TWO_WEEKS)
    assert stored(store, first.session_id) is None
    assert stored(store, second.session_id) == {"after": 1}


def test_clear_empties_the_session(client: Client, store: Store) -> None:
    first = session_cookie(client.get("/t/set/"))
    assert session_cookie(client.get("/t/clear/")).expires_now
    assert stored(store, first.session_id) is None


def test_save_forces_a_write(client: Client, store: Store, clock: FakeClock) -> None:
    cookie = session_cookie(client.get("/t/set/"))
    key = hashlib.sha256(cookie.session_id.encode()).hexdigest()
    before = store.load(key)
    clock.advance(1)
    client.get("/t/save/")
    after = store.load(key)
    assert before is not None and after is not None
    assert after[1] != before[1]  # a new version: the record was rewritten


def test_test_cookie_api(client: Client) -> None:
    assert result(client.get("/t/test-cookie/")) is False
    client.get("/t/set-test-cookie/")
    assert result(client.get("/t/test-cookie/")) is True
    assert result(client.get("/t/test-cookie/")) is False  # deleted once it worked


def test_async_views_use_the_async_methods(client: Client) -> None:
    assert client.get("/t/async/").text == "1"
    assert client.get("/t/async/").text == "2"
    flushed = client.get("/t/async/")
    assert flushed.text == "3"
    assert session_cookie(flushed).expires_now
    assert client.get("/t/async/").text == "1"


# -- expiry ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("action", "max_age", "age", "browser_close"),
    [
        ("expiry-int", "3600", 3600, False),
        ("expiry-zero", None, TWO_WEEKS, True),
        ("expiry-delta", "7200", 7200, False),
        ("expiry-date", "10800", 10800, False),
        ("expiry-none", str(TWO_WEEKS), TWO_WEEKS, False),
    ],
)
def test_set_expiry(
    client: Client, action: str, max_age: str | None, age: int, browser_close: bool
) -> None:
    response = client.get(f"/t/{action}/")
    assert session_cookie(response).attrs.get("max-age") == max_age
    assert result(response) == {
        "age": age,
        "browser_close": browser_close,
        "date": datetime.fromtimestamp(START + age, timezone.utc).isoformat(),
    }


def test_set_expiry_seconds_is_an_idle_timeout(client: Client, clock: FakeClock) -> None:
    client.get("/t/expiry-int/")
    clock.advance(3000)
    assert result(client.get("/t/read/")) == {"data": 1}  # used again: refreshed
    clock.advance(3000)
    assert result(client.get("/t/read/")) == {"data": 1}
    clock.advance(3601)
    assert result(client.get("/t/read/")) == {}


def test_set_expiry_date_is_not_extended_by_activity(client: Client, clock: FakeClock) -> None:
    client.get("/t/expiry-date/")
    clock.advance(2 * 3600)
    assert result(client.get("/t/read/")) == {"data": 1, "_session_expiry": DEADLINE.isoformat()}
    clock.advance(3600 + 1)
    assert result(client.get("/t/read/")) == {}


def test_set_expiry_none_restores_the_default(client: Client) -> None:
    client.get("/t/expiry-zero/")
    response = client.get("/t/expiry-none/")
    assert session_cookie(response).attrs["max-age"] == str(TWO_WEEKS)


def test_set_expiry_refuses_negative_seconds(client: Client) -> None:
    assert "seconds >= 0" in result(client.get("/t/expiry-negative/"))


# -- settings ----------------------------------------------------------------


def test_cookie_settings_are_honoured_and_followed(make_client: Callable[..., Client]) -> None:
    client = make_client()
    with override_settings(
        SESSION_COOKIE_NAME="sid",
        SESSION_COOKIE_AGE=600,
        SESSION_COOKIE_DOMAIN="example.org",
        SESSION_COOKIE_PATH="/app",
        SESSION_COOKIE_SECURE=True,
        SESSION_COOKIE_HTTPONLY=False,
        SESSION_COOKIE_SAMESITE="Strict",
    ):
        response = client.get("/t/set/")
        assert result(client.get("/t/cookie-age/")) == 600
    cookie = one_cookie(response)
    assert cookie.name == "sid"
    assert cookie.attrs == {
        "domain": "example.org",
        "max-age": "600",
        "path": "/app",
        "secure": "",
        "samesite": "Strict",
        "expires": cookie.attrs["expires"],
    }
    # Like Django's own middleware, it follows the settings back.
    assert session_cookie(client.get("/t/set/")).attrs["max-age"] == str(TWO_WEEKS)


def test_secure_false_still_marks_https_cookies_secure(make_client: Callable[..., Client]) -> None:
    client = make_client()
    assert "secure" not in session_cookie(client.get("/t/set/")).attrs
    https = client.get("/t/set/", base_url="https://localhost")
    assert "secure" in session_cookie(https).attrs


def test_https_behind_a_trusted_proxy_marks_cookies_secure(
    make_client: Callable[..., Client],
) -> None:
    forwarded = {"X-Forwarded-Proto": "https"}
    assert "secure" not in session_cookie(make_client().get("/t/set/", headers=forwarded)).attrs
    with override_settings(SECURE_PROXY_SSL_HEADER=("HTTP_X_FORWARDED_PROTO", "https")):
        client = make_client()
        proxied = client.get("/t/set/", headers=forwarded)
        plain = client.get("/t/set/", headers={"X-Forwarded-Proto": "http"})
    assert "secure" in session_cookie(proxied).attrs
    assert "secure" not in session_cookie(plain).attrs


def test_expire_at_browser_close(make_client: Callable[..., Client]) -> None:
    client = make_client()
    with override_settings(SESSION_EXPIRE_AT_BROWSER_CLOSE=True):
        assert "max-age" not in session_cookie(client.get("/t/set/")).attrs
        response = client.get("/t/expiry-int/")
    assert session_cookie(response).attrs["max-age"] == "3600"


@override_settings(CSRF_USE_SESSIONS=False)  # else the CSRF middleware reads every session
def test_save_every_request(make_client: Callable[..., Client], store: Store) -> None:
    client = make_client()
    client.get("/t/set/")
    assert set_cookies(client.get("/t/plain/")) == []
    with override_settings(SESSION_SAVE_EVERY_REQUEST=True):
        client = Client(client.application)
        first = session_cookie(client.get("/t/set/"))
        key = hashlib.sha256(first.session_id.encode()).hexdigest()
        version = store.load(key)
        again = session_cookie(client.get("/t/plain/"))
    assert again.value == first.value
    assert again.attrs["max-age"] == str(TWO_WEEKS)
    assert store.load(key) != version  # rewritten although the view never touched the session


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            {"SESSION_COOKIE_SAMESITE": "None", "SESSION_COOKIE_SECURE": False},
            "SESSION_COOKIE_SAMESITE='None' requires SESSION_COOKIE_SECURE=True",
        ),
        ({"SESSION_COOKIE_AGE": 0}, "SESSION_COOKIE_AGE must be between 1 and"),
        ({"SESSION_COOKIE_PATH": "app"}, "SESSION_COOKIE_PATH must start with '/'"),
    ],
)
def test_bad_setting_fails_at_start_up_naming_it(overrides: dict[str, Any], message: str) -> None:
    with (
        pytest.raises(ImproperlyConfigured, match=f"^{re.escape(message)}"),
        override_settings(**overrides),
    ):
        make_middleware(get_wsgi_application(), store=MemoryStore())


def test_bad_store_url_fails_at_start_up_naming_the_setting() -> None:
    with (
        pytest.raises(ImproperlyConfigured, match=r"WSGI_SESSION_STORE: store URL"),
        override_settings(WSGI_SESSION_STORE="mongodb://localhost"),
    ):
        make_middleware(get_wsgi_application())


def test_system_checks_pass_with_the_admin_installed() -> None:
    from django.core.management import call_command

    call_command("check", fail_level="WARNING")  # the admin wants a SessionMiddleware: it is one


def test_admin_login(client: Client) -> None:
    form = client.get("/admin/login/")
    response = client.post(
        "/admin/login/?next=/admin/",
        data={"username": USER, "password": PASSWORD, "csrfmiddlewaretoken": csrf_token(form)},
    )
    assert response.status_code == 302
    assert response.location == "/admin/"
    assert client.get("/admin/").status_code == 200


# -- misconfiguration --------------------------------------------------------


def test_missing_wsgi_middleware_is_reported_at_the_first_request() -> None:
    client = Client(get_wsgi_application())
    # With CSRF_USE_SESSIONS even Django's 500 page reads the session: the cause escapes.
    with pytest.raises(ImproperlyConfigured) as raised:
        client.get("/t/plain/")
    assert "make_middleware(get_wsgi_application()" in str(raised.value)
    assert "wsgi.py" in str(raised.value)


def test_missing_wsgi_middleware_is_logged_with_a_500(caplog: pytest.LogCaptureFixture) -> None:
    with override_settings(CSRF_USE_SESSIONS=False):
        client = Client(get_wsgi_application())
        with caplog.at_level(logging.ERROR, logger="django.request"):
            response = client.get("/t/plain/")
    assert response.status_code == 500
    errors = [record.exc_info[1] for record in caplog.records if record.exc_info]
    assert len(errors) == 1
    assert isinstance(errors[0], ImproperlyConfigured)
    assert "wsgi.py" in str(errors[0])


def test_django_session_middleware_alongside_is_refused() -> None:
    from django.conf import settings

    both = [*settings.MIDDLEWARE, "django.contrib.sessions.middleware.SessionMiddleware"]
    with override_settings(MIDDLEWARE=both), pytest.raises(ImproperlyConfigured, match="remove"):
        get_wsgi_application()


def test_core_session_middleware_without_make_middleware_is_reported() -> None:
    from wsgi_session import SessionMiddleware

    client = Client(SessionMiddleware(get_wsgi_application(), SECRET, store=MemoryStore()))
    with (
        override_settings(DEBUG_PROPAGATE_EXCEPTIONS=True),
        pytest.raises(ImproperlyConfigured, match="make_middleware"),
    ):
        client.get("/t/plain/")


# -- the test client ---------------------------------------------------------


@pytest.fixture
def test_client(store: Store, clock: FakeClock) -> django_test.Client:
    app = make_middleware(get_wsgi_application(), store=store, clock=clock)
    return django_test.Client(application=app)


def test_test_client_force_login_and_logout(test_client: django_test.Client, store: Store) -> None:
    from django.contrib.auth.models import User

    assert test_client.get("/").status_code == 302
    test_client.force_login(User.objects.get(username=USER))
    response = test_client.get("/")
    assert response.status_code == 200
    assert "Hello, alice" in response.content.decode()
    session_id = test_client.cookies[COOKIE].value.split(".", 1)[0]
    assert stored(store, session_id) is not None

    test_client.logout()
    assert stored(store, session_id) is None
    assert test_client.get("/").status_code == 302


def test_test_client_login_checks_the_password(test_client: django_test.Client) -> None:
    assert not test_client.login(username=USER, password="wrong")
    assert test_client.login(username=USER, password=PASSWORD)
    response = test_client.get("/")
    assert response.wsgi_request.user.get_username() == USER  # Django's response extras work
    assert test_client.session["visits"] == 1


def test_test_client_session_can_be_saved_twice(test_client: django_test.Client) -> None:
    session = test_client.session
    session["cart"] = [1]
    session.save()
    session["cart"] = [1, 2]
    session.save()  # the record exists now: updated, not created again
    assert test_client.get("/t/read/").json() == {"result": {"cart": [1, 2]}}


def test_test_client_session_can_be_set_up(test_client: django_test.Client) -> None:
    session = test_client.session
    session["cart"] = [1, 2]
    session.save()
    assert test_client.get("/t/read/").json() == {"result": {"cart": [1, 2]}}
    session = test_client.session
    session["cart"].append(3)
    session.save()
    assert test_client.get("/t/read/").json() == {"result": {"cart": [1, 2, 3]}}


def test_test_client_sees_session_cookies_and_vary(test_client: django_test.Client) -> None:
    response = test_client.get("/t/expiry-int/")
    assert response.cookies[COOKIE]["max-age"] == "3600"
    assert "Cookie" in response["Vary"]
    assert test_client.get("/t/read/").json()["result"] == {"data": 1}


def test_test_client_enforces_csrf_when_asked(store: Store) -> None:
    app = make_middleware(get_wsgi_application(), store=store)
    client = django_test.Client(enforce_csrf_checks=True, application=app)
    client.get("/login/")
    assert client.post("/login/", {"username": USER, "password": PASSWORD}).status_code == 403


def test_test_client_defaults_to_settings_wsgi_application(django_project: Path) -> None:
    client = django_test.Client()  # the example's wsgi.py: the store named by WSGI_SESSION_STORE
    assert client.login(username=USER, password=PASSWORD)
    assert client.get("/").status_code == 200
    session_id = client.cookies[COOKIE].value.split(".", 1)[0]
    # The settings' store: Django is set up once per process, maybe by another module.
    from django.conf import settings

    sessions = store_from_url(settings.WSGI_SESSION_STORE)
    assert isinstance(sessions, SQLiteStore)
    data = stored(sessions, session_id)
    sessions.close()
    assert data is not None and data["visits"] == 1


def test_djangos_own_test_client_is_told_what_to_use() -> None:
    from django.test import Client as DjangoClient

    with pytest.raises(ImproperlyConfigured, match=r"wsgi_session\.django\.test\.Client"):
        DjangoClient().get("/")


def test_test_client_refuses_an_application_without_the_middleware() -> None:
    with pytest.raises(ImproperlyConfigured, match="application="):
        django_test.Client(application=get_wsgi_application())  # type: ignore[arg-type]


def test_seal_records_setting_seals_what_the_store_keeps(
    make_client: Callable[..., Client], store: Store
) -> None:
    drop_unused_middlewares()
    with override_settings(WSGI_SESSION_SEAL_RECORDS=True):
        client = make_client()
        _, logged_in = log_in(client)
        found = store.load(hashlib.sha256(logged_in.session_id.encode("ascii")).hexdigest())
        assert found is not None and Record.is_sealed(found[0])
        assert b"_auth_user_id" not in found[0]  # the session data is sealed
        assert "Hello, alice" in client.get("/").text


def test_require_sealed_without_sealing_fails_at_start_up_naming_the_settings() -> None:
    drop_unused_middlewares()
    with (
        pytest.raises(
            ImproperlyConfigured,
            match=r"^WSGI_SESSION_REQUIRE_SEALED=True .* needs WSGI_SESSION_SEAL_RECORDS=True",
        ),
        override_settings(WSGI_SESSION_REQUIRE_SEALED=True),
    ):
        make_middleware(get_wsgi_application(), store=MemoryStore())


def test_seal_records_without_cryptography_fails_at_start_up_naming_the_setting(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from wsgi_session import crypto

    drop_unused_middlewares()
    monkeypatch.setattr(crypto, "AESGCM", None)  # fault injection: the package is installed
    with (
        pytest.raises(ImproperlyConfigured, match=r"^WSGI_SESSION_SEAL_RECORDS=True needs"),
        override_settings(WSGI_SESSION_SEAL_RECORDS=True),
    ):
        make_middleware(get_wsgi_application(), store=MemoryStore())


def test_metrics_and_audit_settings_build_them_and_a_bad_one_is_named() -> None:
    from wsgi_session.metrics import PrometheusMetrics

    with override_settings(WSGI_SESSION_METRICS="prometheus", WSGI_SESSION_AUDIT=True):
        middleware = make_middleware(get_wsgi_application(), store=MemoryStore())
        assert isinstance(middleware.metrics, PrometheusMetrics)
        assert middleware.audit is not None
    with (
        pytest.raises(ImproperlyConfigured, match=r"^WSGI_SESSION_METRICS must be one of"),
        override_settings(WSGI_SESSION_METRICS="statsd"),
    ):
        make_middleware(get_wsgi_application(), store=MemoryStore())

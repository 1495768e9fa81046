"""``SESSION_ENGINE = "wsgi_session.django.engine"``: Django's own middleware, test Client and
commands, and SessionBase's promises as Django's built-in engines keep them.

The example project's settings, with only SESSION_ENGINE and MIDDLEWARE changed to
Django's stock ones (no wrapper in wsgi.py); the stores are real in-process ones.
"""

from __future__ import annotations

import asyncio
import hashlib
import importlib
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import django
import pytest
from django.contrib.sessions.backends.base import UpdateError
from django.contrib.sessions.backends.signed_cookies import SessionStore as SignedCookieStore
from django.core import checks
from django.core.exceptions import ImproperlyConfigured
from django.core.handlers.wsgi import WSGIHandler
from django.core.management import call_command
from django.core.management.base import SystemCheckError
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.test import Client, override_settings
from django.urls import path
from django.utils import timezone
from django_setup import (
    PASSWORD,
    USER,
    django_project_files,
    drop_unused_middlewares,
    example_settings,
)
from helpers import CountingStore, FakeClock, parse_set_cookie, store_key
from werkzeug.test import Client as WSGIClient

from wsgi_session import MemoryStore
from wsgi_session.backends import ServerSideBackend
from wsgi_session.cookies import KeyRing
from wsgi_session.django import engine
from wsgi_session.django.engine import SessionStore
from wsgi_session.lifetime import Lifetime
from wsgi_session.record import Record
from wsgi_session.session import new_session_id

COOKIE = "sessionid"
AGE = 14 * 24 * 3600
OTHER_KEY = "another-django-secret-0123456789abcdef0123456789"

ENGINE_MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]


def counter(request: HttpRequest) -> HttpResponse:
    request.session["n"] = request.session.get("n", 0) + 1
    return HttpResponse(str(request.session["n"]))


def read(request: HttpRequest) -> HttpResponse:
    return JsonResponse(
        {"data": dict(request.session.items()), "user": str(request.user.get_username())}
    )


def nothing(request: HttpRequest) -> HttpResponse:
    return HttpResponse("ok")


def logout_view(request: HttpRequest) -> HttpResponse:
    from django.contrib.auth import logout

    logout(request)
    return HttpResponse("bye")


def create_if_keyless(request: HttpRequest) -> HttpResponse:
    """The idiom of carts and rate limits keyed by the session key."""
    if not request.session.session_key:
        request.session.create()
    return HttpResponse(request.session.session_key)


def empty(request: HttpRequest) -> HttpResponse:
    request.session.clear()
    return HttpResponse(request.session.session_key)


def sign_out_others(request: HttpRequest) -> HttpResponse:
    from wsgi_session.django import sessions

    assert request.user.pk is not None
    return HttpResponse(str(sessions(request).revoke(request.user.pk, keep=request.session)))


urlpatterns = [
    path("e/sign-out-others/", sign_out_others),
    path("e/counter/", counter),
    path("e/read/", read),
    path("e/nothing/", nothing),
    path("e/logout/", logout_view),
    path("e/create/", create_if_keyless),
    path("e/empty/", empty),
]  # the example's own URLs (the admin, the login form) are added once it is importable
handler500 = "wsgi_session.django.engine.server_error"


@pytest.fixture
def clock(tmp_path_factory: pytest.TempPathFactory) -> FakeClock:
    django_project_files(tmp_path_factory)  # timezone.now() reads the settings
    return FakeClock(timezone.now().timestamp())


class PurgingStore(CountingStore):
    """The counting memory store with the memory store's purge, as clearsessions finds it."""

    def purge_expired(self) -> int:
        inner = self.inner
        assert isinstance(inner, MemoryStore)
        return inner.purge_expired()


@pytest.fixture
def store(clock: FakeClock) -> CountingStore:
    return PurgingStore(MemoryStore(clock=clock))


@pytest.fixture(autouse=True)
def engine_settings(
    tmp_path_factory: pytest.TempPathFactory,
    store: CountingStore,
    clock: FakeClock,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[None]:
    """The engine, Django's own middleware, and a counting store on a clock the test moves."""
    with example_settings(
        tmp_path_factory,
        __name__,
        SESSION_ENGINE="wsgi_session.django.engine",
        MIDDLEWARE=ENGINE_MIDDLEWARE,
        CSRF_USE_SESSIONS=False,
    ):
        from django.conf import settings

        def backend() -> ServerSideBackend:
            keys = KeyRing(settings.SECRET_KEY, settings.SECRET_KEY_FALLBACKS)
            return engine.EngineBackend(store, keys, Lifetime(idle_timeout=AGE, clock=clock))

        monkeypatch.setattr(engine, "_backend", backend)
        yield


def records(store: CountingStore) -> dict[str, Record | None]:
    inner = store.inner
    assert isinstance(inner, MemoryStore)
    kept = list(inner._records)  # the store's own table: what a purge would find
    return {key: Record.decode(found[0]) for key in kept if (found := inner.load(key))}


def kept_records(store: CountingStore) -> int:
    """Records the memory store still holds, expired ones included."""
    inner = store.inner
    assert isinstance(inner, MemoryStore)
    return len(inner._records)


# -- one setting: Django's middleware, test Client, commands, admin ------------------


def test_djangos_own_middleware_keeps_the_session_in_the_store(store: CountingStore) -> None:
    client = Client()
    assert [client.get("/e/counter/").content for _ in range(3)] == [b"1", b"2", b"3"]

    cookie = client.cookies[COOKIE].value
    session_id = cookie.split(".", 1)[0]
    hashed = hashlib.sha256(session_id.encode()).hexdigest()
    stored = records(store)
    assert list(stored) == [hashed]  # keyed by a hash of the id: the store holds no cookie
    record = stored[hashed]
    assert record is not None and record.text == '{"n":3}'  # tagged JSON, not pickle


def test_the_test_clients_login_force_login_and_session_work_unchanged() -> None:
    from django.contrib.auth.models import User

    client = Client()
    assert client.login(username=USER, password=PASSWORD)
    assert client.get("/e/read/").json()["user"] == USER
    session = client.session
    session["cart"] = [1, 2]
    session.save()
    assert client.get("/e/read/").json()["data"]["cart"] == [1, 2]

    other = Client()
    other.force_login(User.objects.get(username="bob"))
    assert other.get("/e/read/").json()["user"] == "bob"
    before = other.cookies[COOKIE].value
    other.get("/e/logout/")
    assert other.get("/e/read/").json()["user"] == ""
    assert not SessionStore().exists(before)


def test_the_admin_works() -> None:
    client = Client()
    assert client.login(username=USER, password=PASSWORD)
    assert client.get("/admin/").status_code == 200


def test_a_login_through_the_form_cycles_the_key() -> None:
    client = Client()
    client.get("/e/counter/")
    anonymous = client.cookies[COOKIE].value

    response = client.post("/login/", {"username": USER, "password": PASSWORD})

    assert response.status_code == 302
    assert client.cookies[COOKIE].value != anonymous
    assert not SessionStore().exists(anonymous)
    answer = client.get("/e/read/").json()
    assert answer["user"] == USER
    assert answer["data"]["n"] == 1  # the data survived the new key


def test_clearsessions_purges_expired_records(store: CountingStore, clock: FakeClock) -> None:
    with override_settings(INSTALLED_APPS=[*_installed_apps(), "django.contrib.sessions"]):
        Client().get("/e/counter/")
        clock.advance(AGE + 1)
        Client().get("/e/counter/")
        assert kept_records(store) == 2  # the memory store keeps expired records until purged

        call_command("clearsessions")

        assert kept_records(store) == 1


def _installed_apps() -> list[str]:
    from django.conf import settings

    return list(settings.INSTALLED_APPS)


def test_clear_expired_purges(store: CountingStore, clock: FakeClock) -> None:
    Client().get("/e/counter/")
    Client().get("/e/counter/")
    clock.advance(AGE + 1)
    assert kept_records(store) == 2

    SessionStore.clear_expired()

    assert kept_records(store) == 0


# -- a store outage answers 503 ---------------------------------------------------


@pytest.mark.parametrize("operation", ["load", "save"])
def test_a_store_outage_answers_503_with_handler500(store: CountingStore, operation: str) -> None:
    """Fault injected: the in-process store cannot fail on its own."""
    client = Client(raise_request_exception=False)
    client.get("/e/counter/")
    store.fail = {operation}

    response = client.get("/e/counter/")

    assert response.status_code == 503
    assert response["Retry-After"] == "1"
    store.fail = set()
    assert client.get("/e/counter/").content == b"2"


# -- cookies that do not verify ---------------------------------------------------


def test_a_cookie_another_key_signed_is_left_alone_and_found_by_a_server_with_the_key(
    store: CountingStore,
) -> None:
    client = Client()
    client.get("/e/counter/")
    cookie = client.cookies[COOKIE].value
    store.calls.clear()

    with override_settings(SECRET_KEY=OTHER_KEY):
        stale = WSGIClient(WSGIHandler())
        stale.set_cookie(COOKIE, cookie)
        for path_ in ("/e/nothing/", "/e/read/"):
            response = stale.get(path_)
            assert response.headers.getlist("Set-Cookie") == [], path_
        assert store.total == 0  # never looked up

    assert client.get("/e/counter/").content == b"2"
    with override_settings(SECRET_KEY=OTHER_KEY, SECRET_KEY_FALLBACKS=[_secret()]):
        rolled = WSGIClient(WSGIHandler())
        rolled.set_cookie(COOKIE, cookie)
        response = rolled.get("/e/read/")
        assert response.json["data"] == {"n": 2}
        (resigned,) = map(parse_set_cookie, response.headers.getlist("Set-Cookie"))
        assert resigned.session_id == cookie.split(".", 1)[0]
        assert resigned.value != cookie


def test_a_logout_expires_a_cookie_that_does_not_verify() -> None:
    client = Client()
    client.cookies[COOKIE] = "a" * 43 + "." + "b" * 43  # verified only once the logout uses it

    response = client.get("/e/logout/")

    assert response.cookies[COOKIE].value == ""
    assert response.cookies[COOKIE]["max-age"] == 0


def _secret() -> str:
    from django.conf import settings

    return str(settings.SECRET_KEY)


@pytest.mark.parametrize(
    "key",
    [
        "",
        "short",
        "x" * 500,
        "a" * 43 + ".",
        "odd chars!" * 6,
        new_session_id() + ".forged0123456789012345",
    ],
)
def test_invalid_keys_give_a_fresh_session_with_no_store_write(
    key: str, store: CountingStore
) -> None:
    session = SessionStore(key)

    assert session.session_key is None
    assert session.load() == {}
    assert not session.exists(key)
    assert store.calls["save"] == 0 and store.calls["load"] == 0


# -- SessionBase's promises ---------------------------------------------------------


def test_create_save_load_exists_delete() -> None:
    session = SessionStore()
    session["a"] = 1
    session.save()
    key = session.session_key
    assert key is not None and session.exists(key)

    assert SessionStore(key).load() == {"a": 1}
    SessionStore().delete(key)
    assert not session.exists(key)
    assert SessionStore(key).load() == {}


def test_load_never_creates_a_record(store: CountingStore) -> None:
    session = SessionStore(_signed_unknown_id())
    assert session.load() == {}
    assert session.session_key is None
    assert store.calls["save"] == 0


def _signed_unknown_id() -> str:
    return engine._backend().signer.sign(new_session_id())


def test_session_key_is_read_only() -> None:
    session = SessionStore()
    with pytest.raises(AttributeError):
        session.session_key = "x"  # type: ignore[misc]


def test_save_never_resurrects_a_session_another_request_deleted() -> None:
    first = SessionStore()
    first["data"] = "one"
    first.save(must_create=True)
    SessionStore(first.session_key).delete()

    first["data"] = "two"
    with pytest.raises(UpdateError):
        first.save()
    assert first.load() == {}


def test_a_logout_during_a_request_answers_session_interrupted() -> None:
    client = Client()
    client.get("/e/counter/")
    key = client.cookies[COOKIE].value
    loaded = SessionStore(key)
    loaded["late"] = 1
    SessionStore(key).flush()  # the logout, in another request
    with pytest.raises(UpdateError):
        loaded.save()
    assert not SessionStore().exists(key)


def test_concurrent_saves_keep_each_others_keys() -> None:
    first = SessionStore()
    first["seed"] = 1
    first.save()
    key = first.session_key
    one, two = SessionStore(key), SessionStore(key)
    one["seed"], two["seed"]  # both loaded the same version
    one["a"] = 1
    one.save()
    two["b"] = 2
    two.save()

    assert SessionStore(key).load() == {"seed": 1, "a": 1, "b": 2}


def test_cycle_key_keeps_the_data_and_retires_the_old_key() -> None:
    session = SessionStore()
    session["a"], session["b"] = "c", "d"
    session.save()
    before = session.session_key
    data = list(session.items())

    session.cycle_key()

    assert session.session_key != before
    assert not session.exists(before)
    assert list(session.items()) == data
    session.save()
    assert SessionStore(session.session_key).load() == {"a": "c", "b": "d"}


def _two_requests_on_one_session() -> tuple[str, SessionStore, SessionStore]:
    """A stored session's key, and two requests that both loaded it: a login and a cart."""
    first = SessionStore()
    first["seed"] = 1
    first.save()
    key = first.session_key
    assert key is not None
    login, cart = SessionStore(key), SessionStore(key)
    login["seed"], cart["seed"]  # both loaded
    return key, login, cart


def test_a_write_that_followed_the_forward_survives_the_login_requests_final_save() -> None:
    _, login, cart = _two_requests_on_one_session()
    login.cycle_key()  # new key; the old record forwards to the new one
    cart["cart"] = "x"
    with pytest.raises(UpdateError):
        cart.save()  # follows the forward: merged into the new record, under the new key
    login["_auth_user_id"] = "1"
    login.save()  # Django's middleware, at the end of the login request

    assert SessionStore(login.session_key).load() == {"seed": 1, "cart": "x", "_auth_user_id": "1"}


def test_cycle_key_after_a_save_in_the_same_request_retires_the_old_record() -> None:
    key, login, cart = _two_requests_on_one_session()
    login["step"] = 1
    login.save()  # a save earlier in the login request: the version is unknown after it
    login.cycle_key()  # the old record is another request's too: retired, not deleted
    cart["cart"] = "x"
    with pytest.raises(UpdateError):
        cart.save()
    login.save()

    assert not SessionStore().exists(key)
    assert SessionStore(login.session_key).load() == {"seed": 1, "step": 1, "cart": "x"}


def test_flush_and_clear() -> None:
    session = SessionStore()
    session["x"] = 1
    session.save()
    key = session.session_key
    session.flush()
    assert session.session_key is None and not session.exists(key) and session.is_empty()

    other = SessionStore()
    other["y"] = 1
    other.save()
    other.clear()
    assert other.modified and dict(other.items()) == {}


def test_encode_decode_with_tagged_json() -> None:
    session = SessionStore()
    data = {"when": datetime(2024, 1, 2, 3, 4, 5), "set": {1, 2}, "bytes": b"\x00"}
    assert session.decode(session.encode(data)) == data
    assert session.decode("not signed") == {}


@pytest.mark.parametrize("value", [None, 0, 10, 3600, timedelta(seconds=50), "date"], ids=str)
def test_expiry_getters_answer_as_a_builtin_engine(value: Any) -> None:
    if value == "date":
        value = timezone.now() + timedelta(hours=2)
    ours, djangos = SessionStore(), SignedCookieStore()
    ours.set_expiry(value)
    djangos.set_expiry(value)
    if "_session_expiry" in ours:  # one date for both: set_expiry(timedelta) reads the clock
        djangos["_session_expiry"] = ours["_session_expiry"]
    assert abs(ours.get_expiry_age() - djangos.get_expiry_age()) <= 1
    modification = timezone.now()
    for extra in ({}, {"expiry": 30}, {"expiry": None}, {"expiry": modification}):
        kwargs = {"modification": modification, **extra}
        assert ours.get_expiry_age(**kwargs) == djangos.get_expiry_age(**kwargs)
        assert ours.get_expiry_date(**kwargs) == djangos.get_expiry_date(**kwargs)
    assert ours.get_expire_at_browser_close() == djangos.get_expire_at_browser_close()
    ours["data"] = 1
    ours.save()
    assert SessionStore(ours.session_key).get("_session_expiry") == ours.get("_session_expiry")


def test_an_int_expiry_is_the_records_idle_timeout(clock: FakeClock) -> None:
    session = SessionStore()
    session.set_expiry(60)
    session["a"] = 1
    session.save()
    key = session.session_key
    clock.advance(59)
    assert SessionStore(key).load() == {"a": 1, "_session_expiry": 60}
    clock.advance(2)
    assert SessionStore(key).load() == {}


def test_a_fixed_expiry_date_ends_the_session(clock: FakeClock) -> None:
    session = SessionStore()
    session.set_expiry(timedelta(seconds=100))
    session["a"] = 1
    session.save()
    clock.advance(101)
    assert SessionStore(session.session_key).load() == {}


@pytest.mark.skipif(
    django.VERSION < (5, 0), reason="Django's async session API (aset, asave, ...) came in 5.0"
)
def test_the_async_api() -> None:
    async def scenario() -> dict[str, Any]:
        session = SessionStore()
        await session.aset("n", 1)
        await session.asave()
        key = session.session_key
        again = SessionStore(key)
        found = {"n": await again.aget("n"), "has": await again.ahas_key("n")}
        await again.acycle_key()
        found["cycled"] = again.session_key != key and not await again.aexists(key)
        await again.aset_expiry(10)
        found["age"] = await again.aget_expiry_age()
        await again.aflush()
        found["flushed"] = again.session_key is None
        return found

    assert asyncio.run(scenario()) == {
        "n": 1,
        "has": True,
        "cycled": True,
        "age": 10,
        "flushed": True,
    }


# -- sealing and the owner index: the backend's own write paths -------------------


@pytest.fixture
def settings_backend(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The engine's backend as the settings build it: sealed, on a memory store of its own."""
    drop_unused_middlewares()
    with override_settings(WSGI_SESSION_STORE="memory://", WSGI_SESSION_SEAL_RECORDS=True):
        monkeypatch.setattr(engine, "_backend", engine._build_backend)
        engine._build_backend.cache_clear()
        yield
    engine._build_backend.cache_clear()


def test_the_engine_refuses_require_sealed_without_sealing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from django.conf import settings

    # Set directly, not with override_settings: its signal would rebuild the
    # Django middlewares other tests hold, which refuse the setting too.
    monkeypatch.setattr(settings, "WSGI_SESSION_REQUIRE_SEALED", True, raising=False)
    engine._build_backend.cache_clear()
    with pytest.raises(ImproperlyConfigured, match=r"^WSGI_SESSION_REQUIRE_SEALED=True"):
        engine._build_backend()
    monkeypatch.undo()
    engine._build_backend.cache_clear()


def stored_records() -> list[bytes]:
    return list(stored_items().values())


def stored_items() -> dict[str, bytes]:
    """The memory store's live records, by store key."""
    inner = engine._backend().store
    assert isinstance(inner, MemoryStore)
    return {key: found[0] for key in list(inner._records) if (found := inner.load(key))}


def test_seal_records_setting_seals_the_engines_records(settings_backend: None) -> None:
    client = Client()
    assert client.get("/e/counter/").content == b"1"
    assert client.login(username=USER, password=PASSWORD)
    assert client.get("/e/counter/").content == b"2"  # the login kept the data

    raw = stored_records()
    live = [value for value in raw if not value.startswith(b"1s F ")]
    assert live and all(Record.is_sealed(value) for value in raw)
    assert all(value.startswith(b"2s ") for value in live)  # owned by the user: 2s
    for value in raw:
        assert b'"n"' not in value and b"_auth_user_id" not in value


def test_an_engine_login_is_listed_and_a_revoke_logs_that_client_out(
    settings_backend: None,
) -> None:
    from django.contrib.auth.models import User

    user = User.objects.get(username=USER)
    phone, laptop = Client(), Client()
    assert phone.login(username=USER, password=PASSWORD)
    assert laptop.login(username=USER, password=PASSWORD)
    sessions = engine.sessions()
    listed = sessions.of(user.pk)
    assert len(listed) == 2

    # One session ended by its handle: exactly one of the two clients is logged out.
    assert sessions.revoke_one(listed[0].handle, user.pk)
    users = sorted(client.get("/e/read/").json()["user"] for client in (phone, laptop))
    assert users == ["", USER]
    assert len(sessions.of(user.pk)) == 1

    assert sessions.revoke(user.pk) == 1
    assert [client.get("/e/read/").json()["user"] for client in (phone, laptop)] == ["", ""]
    assert sessions.of(user.pk) == []


def test_a_logout_through_the_engine_leaves_no_listed_session(settings_backend: None) -> None:
    from django.contrib.auth.models import User

    user = User.objects.get(username=USER)
    client = Client()
    assert client.login(username=USER, password=PASSWORD)
    assert len(engine.sessions().of(user.pk)) == 1
    assert client.get("/e/logout/").content == b"bye"
    assert engine.sessions().of(user.pk) == []


def test_sessions_of_the_request_revoke_the_other_engine_sessions(settings_backend: None) -> None:
    phone, laptop = Client(), Client()
    assert phone.login(username=USER, password=PASSWORD)
    assert laptop.login(username=USER, password=PASSWORD)
    assert laptop.get("/e/sign-out-others/").content == b"1"  # the phone's, not its own
    assert phone.get("/e/read/").json()["user"] == ""
    assert laptop.get("/e/read/").json()["user"] == USER


# -- what Django's own engines do, kept -------------------------------------------------

DJANGOS_CACHE_ENGINE = "django.contrib.sessions.backends.cache"  # Django's, on locmem
REMOTE_USER_MIDDLEWARE = [
    *ENGINE_MIDDLEWARE[:5],
    "django.contrib.auth.middleware.RemoteUserMiddleware",  # after AuthenticationMiddleware
    *ENGINE_MIDDLEWARE[5:],
]


def test_a_user_switch_logs_the_other_user_in_under_a_new_key(store: CountingStore) -> None:
    """RemoteUserMiddleware, when the header names another user: logout(), then login()."""
    from django.contrib.auth.models import User

    with override_settings(
        MIDDLEWARE=REMOTE_USER_MIDDLEWARE,
        AUTHENTICATION_BACKENDS=["django.contrib.auth.backends.RemoteUserBackend"],
    ):
        client = Client()
        assert client.get("/e/read/", REMOTE_USER=USER).json()["user"] == USER
        alice = client.cookies[COOKIE].value

        response = client.get("/e/read/", REMOTE_USER="bob")

        assert response.status_code == 200
        assert response.json()["user"] == "bob"
        bob = client.cookies[COOKIE].value
        assert bob != alice
        assert not SessionStore().exists(alice)  # the logout ended alice's session
        stored = SessionStore(bob).load()
        assert stored["_auth_user_id"] == str(User.objects.get(username="bob").pk)
        assert client.get("/e/read/", REMOTE_USER="bob").json()["user"] == "bob"
        assert client.cookies[COOKIE].value == bob


@pytest.mark.parametrize("engine_name", [engine.__name__, DJANGOS_CACHE_ENGINE])
def test_a_session_keyed_on_request_is_stored_and_kept_as_djangos_engines_keep_it(
    engine_name: str,
) -> None:
    """``if not request.session.session_key: request.session.create()``, and its emptying."""
    with override_settings(SESSION_ENGINE=engine_name):
        store_class = importlib.import_module(engine_name).SessionStore
        client = Client()
        key = client.get("/e/create/").content.decode()

        assert key and client.cookies[COOKIE].value == key
        assert store_class().exists(key)
        assert client.get("/e/create/").content.decode() == key  # the same session again

        client.get("/e/counter/")
        assert client.get("/e/empty/").content.decode() == key  # emptied by the application:
        assert client.cookies[COOKIE].value == key  # its cookie is not deleted,
        assert store_class().exists(key)  # its record is kept,
        assert client.get("/e/counter/").content == b"1"  # and it is the session next time
        assert client.cookies[COOKIE].value == key


@pytest.mark.parametrize("write", ["save", "create", "cycle_key"])
@pytest.mark.parametrize("engine_name", [engine.__name__, DJANGOS_CACHE_ENGINE])
def test_an_explicit_write_of_an_empty_session_stores_it(engine_name: str, write: str) -> None:
    session = importlib.import_module(engine_name).SessionStore()

    getattr(session, write)()

    key = session.session_key
    assert key is not None and session.exists(key)
    again = type(session)(key)
    assert again.load() == {} and again.session_key == key


@pytest.mark.parametrize("save_every_request", [False, True])
@pytest.mark.parametrize("engine_name", [engine.__name__, DJANGOS_CACHE_ENGINE])
def test_the_middleware_stores_no_empty_session_on_its_own(
    store: CountingStore, engine_name: str, save_every_request: bool
) -> None:
    with override_settings(
        SESSION_ENGINE=engine_name, SESSION_SAVE_EVERY_REQUEST=save_every_request
    ):
        response = Client().get("/e/read/")  # reads the session: empty, no key

    assert response.status_code == 200
    assert COOKIE not in response.cookies
    assert store.calls["save"] == 0


def test_creating_a_session_store_reads_and_builds_nothing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A bad setting fails the requests that use their session, and the system check."""
    from django.conf import settings

    monkeypatch.setattr(engine, "_backend", engine._build_backend)
    # Set directly, not with override_settings: its signal would rebuild the
    # Django middlewares other tests hold, which refuse the setting too.
    monkeypatch.setattr(settings, "WSGI_SESSION_STORE", "nowhere://at-all")
    engine._build_backend.cache_clear()
    try:
        cookie = "a" * 43 + "." + "b" * 43
        SessionStore(cookie)
        assert engine._build_backend.cache_info().currsize == 0

        client = Client()
        assert client.get("/e/nothing/").status_code == 200
        client.cookies[COOKIE] = cookie  # a cookie the page never reads
        response = client.get("/e/nothing/")
        assert response.status_code == 200
        assert COOKIE not in response.cookies
        with pytest.raises(ImproperlyConfigured, match="WSGI_SESSION_STORE"):
            client.get("/e/counter/")

        found = [error for error in checks.run_checks() if error.id == "wsgi_session.E001"]
        assert len(found) == 1 and "WSGI_SESSION_STORE" in found[0].msg
        with pytest.raises(SystemCheckError, match="WSGI_SESSION_STORE"):
            call_command("check")
    finally:
        monkeypatch.undo()
        engine._build_backend.cache_clear()
    assert [error for error in checks.run_checks() if error.id == "wsgi_session.E001"] == []


def test_installed_as_an_app_the_engine_is_checked_at_start_up() -> None:
    from django.apps import apps

    with override_settings(INSTALLED_APPS=[*_installed_apps(), "wsgi_session.django"]):
        assert apps.get_app_config("wsgi_session").name == "wsgi_session.django"
        assert engine.check_settings in checks.registry.registry.get_checks()


@pytest.mark.parametrize("first", ["login", "logout"])
def test_a_logout_racing_a_login_ends_the_session_in_either_order(
    settings_backend: None, first: str
) -> None:
    """Two requests loaded one session: a login (``cycle_key``) and a logout (``flush``)."""
    from django.contrib.auth.models import User

    user = User.objects.get(username=USER)
    client = Client()
    assert client.login(username=USER, password=PASSWORD)
    key = client.cookies[COOKIE].value
    # What Client.login left besides the logged-in record: the forward of the test
    # client's own empty session, a session as Django's engines keep it, which its
    # login cycled.
    before = set(stored_items())
    login, logout = SessionStore(key), SessionStore(key)
    login.load(), logout.load()  # both loaded the logged-in session
    login["_auth_user_id"], logout["_auth_user_id"]

    if first == "login":
        login.cycle_key()  # the login finishes first: the old record forwards to the new one
        login.save()
        logout.flush()
    else:
        logout.flush()
        with pytest.raises(UpdateError):
            login.cycle_key()
    assert login.session_key is not None
    assert not SessionStore().exists(login.session_key)
    assert not SessionStore().exists(key)
    assert engine.sessions().of(user.pk) == []
    # Nothing of the session is left: no owned record, no forward of its own.
    left = {stored for stored, raw in stored_items().items() if raw.startswith((b"2s ", b"1s F "))}
    assert left <= before - {store_key(key.rsplit(".", 1)[0])}
    assert not any(stored_items()[stored].startswith(b"2s ") for stored in left)

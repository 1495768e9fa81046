"""The Flask adapter through Flask's test client: config, cookies, flashes, extensions."""

from __future__ import annotations

import contextlib
import hmac
import re
import secrets
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from database_servers import PostgresServer
from flask import (
    Flask,
    Response,
    abort,
    flash,
    get_flashed_messages,
    request,
    session,
    stream_with_context,
)
from flask.testing import FlaskClient
from flask_login import (
    LoginManager,
    UserMixin,
    current_user,
    login_required,
    login_user,
    logout_user,
)
from helpers import (
    SECRET,
    CountingStore,
    FakeClock,
    one_cookie,
    set_cookies,
    store_key,
    stored_data,
)
from markupsafe import Markup
from werkzeug.test import TestResponse

from wsgi_session import ConfigurationError, MemoryStore, SessionSealed
from wsgi_session.flask import SETTINGS, FlaskSession, FlaskSessionMiddleware, Session
from wsgi_session.migrate import Claim

OLD_SECRET = "old-secret-fedcba9876543210fedcba9876543210"
LIFETIME = 3600


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def store(clock: FakeClock) -> CountingStore:
    return CountingStore(MemoryStore(clock=clock))


@pytest.fixture
def app(store: CountingStore, clock: FakeClock) -> Flask:
    return make_app(store, clock)


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


def make_app(store: Any, clock: Callable[[], float] = time.time) -> Flask:
    """A Flask app with a few session routes, its session kept by the adapter."""
    app = Flask(__name__)
    app.testing = True
    app.config.update(SECRET_KEY=SECRET, PERMANENT_SESSION_LIFETIME=timedelta(seconds=LIFETIME))
    Session(app, store=store, clock=clock)

    @app.get("/nothing")
    def nothing() -> str:
        return "ok"

    @app.get("/set")
    def set_user() -> str:
        session["user"] = "alice"
        return session.id

    @app.get("/read")
    def read() -> dict[str, Any]:
        return dict(session)

    @app.get("/permanent/<int:on>")
    def permanent(on: int) -> str:
        session.permanent = bool(on)
        session["user"] = "alice"
        return "ok"

    @app.get("/clear")
    def clear() -> str:
        session.clear()
        return "ok"

    @app.get("/flags")
    def flags() -> dict[str, bool]:
        return {"new": session.new, "modified": session.modified, "accessed": session.accessed}

    return app


def session_id(response: TestResponse) -> str:
    """The id in the response's session cookie (other cookies may come along)."""
    (cookie,) = (cookie for cookie in set_cookies(response) if cookie.name == "session")
    return cookie.session_id


# -- the basics ----------------------------------------------------------------


def test_flask_session_is_kept_in_the_store_under_the_cookie_id(
    client: FlaskClient, store: CountingStore
) -> None:
    response = client.get("/set")

    cookie = one_cookie(response)
    assert cookie.name == "session"
    assert cookie.session_id == response.text
    assert stored_data(store, response.text) == {"user": "alice"}
    assert client.get("/read").json == {"user": "alice"}


def test_app_factory_style_init_app_installs_the_middleware(store: CountingStore) -> None:
    extension = Session(store=store)
    app = Flask(__name__)
    app.config["SECRET_KEY"] = SECRET
    extension.init_app(app)

    @app.get("/")
    def index() -> str:
        session["n"] = session.get("n", 0) + 1
        return str(session["n"])

    client = app.test_client()
    assert [client.get("/").text for _ in range(3)] == ["1", "2", "3"]
    assert isinstance(app.wsgi_app, FlaskSessionMiddleware)
    assert app.extensions["wsgi_session"] is app.wsgi_app


def test_untouched_request_costs_no_store_call_and_sends_no_session_headers(
    app: Flask, client: FlaskClient, store: CountingStore
) -> None:
    app.config["SESSION_REFRESH_EACH_REQUEST"] = False
    client.get("/permanent/1")
    store.calls.clear()

    response = client.get("/nothing")

    assert store.total == 0
    assert "Set-Cookie" not in response.headers
    assert "Vary" not in response.headers


def test_read_only_request_varies_on_cookie_once_and_sends_no_cookie(
    client: FlaskClient, store: CountingStore
) -> None:
    client.get("/set")
    store.calls.clear()

    response = client.get("/read")

    assert store.calls == {"load": 1}
    assert response.headers.getlist("Vary") == ["Cookie"]
    assert "Set-Cookie" not in response.headers


def test_vary_cookie_is_merged_into_the_views_own_vary_once(
    app: Flask, client: FlaskClient
) -> None:
    @app.get("/negotiated")
    def negotiated() -> Response:
        response = Response(str(session.get("user")))
        response.vary.add("Accept-Encoding")
        response.vary.add("Accept-Language")
        return response

    @app.get("/varies-itself")
    def varies_itself() -> Response:
        session["seen"] = True
        return Response("ok", headers={"Vary": "cookie"})

    assert client.get("/negotiated").headers.getlist("Vary") == [
        "Accept-Encoding, Accept-Language, Cookie"
    ]
    assert client.get("/varies-itself").headers.getlist("Vary") == ["cookie"]


def test_new_accessed_and_modified_describe_the_request(app: Flask, client: FlaskClient) -> None:
    @app.get("/modify-then-flags")
    def modify_then_flags() -> dict[str, bool]:
        session["x"] = 1
        return {"new": session.new, "modified": session.modified}

    assert client.get("/flags").json == {"new": True, "modified": False, "accessed": True}
    assert client.get("/modify-then-flags").json == {"new": True, "modified": True}
    assert client.get("/flags").json == {"new": False, "modified": False, "accessed": True}


def test_session_modified_true_forces_a_save(
    app: Flask, client: FlaskClient, store: CountingStore
) -> None:
    @app.get("/nested")
    def nested() -> str:
        session["cart"] = ["apple"]
        return "ok"

    @app.get("/force")
    def force() -> str:
        session.modified = True
        return "ok"

    client.get("/nested")
    store.calls.clear()
    client.get("/read")
    assert store.calls["save"] == 0

    client.get("/force")

    assert store.calls["save"] == 1


def test_values_flask_accepts_come_back_with_their_types(app: Flask, client: FlaskClient) -> None:
    values: dict[str, Any] = {
        "tuple": (1, "two", (3,)),
        "bytes": b"\x00\xffraw",
        "markup": Markup("<b>bold</b>"),
        "uuid": UUID("12345678-1234-5678-1234-567812345678"),
        "aware": datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=timezone(timedelta(hours=2))),
        "tag_lookalike": {" t": [1, 2]},
        "nested_lookalike": [{" b": "not bytes"}, {" di": {" m": "x"}}],
    }
    seen: dict[str, Any] = {}

    @app.get("/store-values")
    def store_values() -> str:
        session.update(values)
        return "ok"

    @app.get("/load-values")
    def load_values() -> str:
        seen.update(session)
        return "ok"

    client.get("/store-values")
    client.get("/load-values")

    assert seen == values
    assert {key: type(value) for key, value in seen.items()} == {
        key: type(value) for key, value in values.items()
    }
    assert seen["tuple"][2] == (3,)
    assert seen["aware"].utcoffset() == timedelta(hours=2)


def test_after_request_changes_are_saved(app: Flask, client: FlaskClient) -> None:
    @app.after_request
    def count_responses(response: Response) -> Response:
        if request.path != "/read":
            session["responses"] = session.get("responses", 0) + 1
        return response

    client.get("/nothing")
    client.get("/set")

    assert client.get("/read").json == {"responses": 2, "user": "alice"}


def test_flashed_messages_are_shown_once(app: Flask, client: FlaskClient) -> None:
    @app.get("/flash/<message>")
    def flash_it(message: str) -> str:
        flash(message, "info")
        return "ok"

    @app.get("/messages")
    def messages() -> list[Any]:
        return get_flashed_messages(with_categories=True)

    client.get("/flash/saved")
    client.get("/flash/twice")

    assert client.get("/messages").json == [["info", "saved"], ["info", "twice"]]
    assert client.get("/messages").json == []


def test_session_transaction_reads_and_writes_the_stored_session(
    client: FlaskClient, store: CountingStore
) -> None:
    with client.session_transaction() as before:
        assert isinstance(before, FlaskSession)
        assert dict(before) == {}
        before["cart"] = ("pear",)

    client.get("/set")
    assert client.get("/read").json == {"cart": ["pear"], "user": "alice"}

    with client.session_transaction() as after:
        assert dict(after) == {"cart": ("pear",), "user": "alice"}
        del after["cart"]

    assert client.get("/read").json == {"user": "alice"}


# -- permanence, lifetime, refresh ----------------------------------------------


def test_permanent_session_cookie_expires_after_permanent_session_lifetime(
    client: FlaskClient,
) -> None:
    cookie = one_cookie(client.get("/permanent/1"))

    assert cookie.attrs["max-age"] == str(LIFETIME)
    assert "expires" in cookie.attrs


def test_non_permanent_session_cookie_lasts_the_browser_session(client: FlaskClient) -> None:
    cookie = one_cookie(client.get("/permanent/0"))

    assert "max-age" not in cookie.attrs
    assert "expires" not in cookie.attrs


def test_making_a_session_non_permanent_resends_its_cookie_without_expiry(
    client: FlaskClient,
) -> None:
    first = one_cookie(client.get("/permanent/1"))

    second = one_cookie(client.get("/permanent/0"))

    # The same id, now marked as a browser session's (backends/server.py).
    assert second.session_id == first.session_id
    assert second.value != first.value and second.value.startswith(first.session_id + ".b.")
    assert "max-age" not in second.attrs
    assert "expires" not in second.attrs


def test_permanent_session_lifetime_is_the_idle_timeout(
    app: Flask, client: FlaskClient, clock: FakeClock
) -> None:
    for permanent in (1, 0):
        client.get(f"/permanent/{permanent}")
        clock.advance(LIFETIME - 1)
        assert client.get("/read").json == {"user": "alice"}

        clock.advance(LIFETIME)

        assert client.get("/read").json == {}


def test_lifetime_changed_after_init_app_applies_to_the_next_request(
    app: Flask, client: FlaskClient
) -> None:
    app.config["PERMANENT_SESSION_LIFETIME"] = 600  # Flask also accepts seconds

    cookie = one_cookie(client.get("/permanent/1"))

    assert cookie.attrs["max-age"] == "600"


@pytest.mark.parametrize(
    ("refresh", "permanent", "resent"),
    [(True, 1, True), (False, 1, False), (True, 0, False), (False, 0, False)],
)
def test_refresh_each_request_resends_only_a_permanent_sessions_cookie(
    app: Flask, client: FlaskClient, refresh: bool, permanent: int, resent: bool
) -> None:
    app.config["SESSION_REFRESH_EACH_REQUEST"] = refresh
    client.get(f"/permanent/{permanent}")

    cookies = set_cookies(client.get("/read"))

    assert len(cookies) == int(resent)
    if resent:
        assert cookies[0].attrs["max-age"] == str(LIFETIME)


def test_untouched_request_with_a_browser_session_cookie_makes_no_store_call(
    client: FlaskClient, store: CountingStore
) -> None:
    # Flask's defaults: SESSION_REFRESH_EACH_REQUEST on, sessions not permanent.
    client.get("/set")
    store.calls.clear()

    response = client.get("/nothing")

    assert response.status_code == 200
    assert store.total == 0
    assert set_cookies(response) == []
    assert client.get("/read").json == {"user": "alice"}


@pytest.mark.parametrize("on", [1, 0])
def test_untouched_request_loads_only_when_the_cookie_may_be_a_permanent_sessions(
    client: FlaskClient, store: CountingStore, on: int
) -> None:
    # Switched either way, the session's next cookie says which it is now.
    client.get(f"/permanent/{1 - on}")
    client.get(f"/permanent/{on}")
    store.calls.clear()

    cookies = set_cookies(client.get("/nothing"))

    assert store.total == on
    assert len(cookies) == on  # a permanent session's cookie is refreshed, with its Max-Age
    if on:
        assert cookies[0].attrs["max-age"] == str(LIFETIME)


def test_a_cookie_issued_before_the_browser_session_mark_still_opens_its_session(
    app: Flask, client: FlaskClient, store: CountingStore
) -> None:
    # Such a cookie signs the bare id, as a permanent session's still does.
    client.get("/set")
    sid = session_id(client.get("/set"))
    old = app.extensions["wsgi_session"].settings()[1].signer.sign(sid)
    client.set_cookie("session", old)
    store.calls.clear()

    untouched = client.get("/nothing")  # permanent or not: only the record says

    assert store.calls["load"] == 1 and set_cookies(untouched) == []
    assert client.get("/read").json == {"user": "alice"}
    upgraded = one_cookie(client.get("/set"))  # a write sends it marked
    assert upgraded.session_id == sid and upgraded.value != old
    store.calls.clear()
    client.get("/nothing")
    assert store.total == 0


def test_a_forged_browser_session_mark_opens_nothing(
    client: FlaskClient, store: CountingStore
) -> None:
    client.get("/permanent/1")
    cookie = client.get_cookie("session")
    assert cookie is not None
    permanent = cookie.value
    sid, signature = permanent.split(".")
    client.set_cookie("session", f"{sid}.b.{signature}")  # the mark is signed with the id
    store.calls.clear()

    untouched = client.get("/nothing")
    read = client.get("/read")

    assert set_cookies(untouched) == []
    assert read.json == {}
    assert store.total == 0


def test_modified_permanent_session_resends_its_cookie_without_refresh_each_request(
    app: Flask, client: FlaskClient
) -> None:
    app.config["SESSION_REFRESH_EACH_REQUEST"] = False
    client.get("/permanent/1")

    response = client.get("/set")

    assert one_cookie(response).attrs["max-age"] == str(LIFETIME)


# -- cookie configuration, read on every request --------------------------------


def test_cookie_settings_changed_after_init_app_are_honoured(
    app: Flask, client: FlaskClient
) -> None:
    app.config.update(
        SESSION_COOKIE_NAME="sid",
        SESSION_COOKIE_HTTPONLY=False,
        SESSION_COOKIE_SAMESITE="lax",
        SESSION_COOKIE_PATH="/",
    )

    cookie = one_cookie(client.get("/set"))

    assert cookie.name == "sid"
    assert cookie.attrs["samesite"] == "Lax"
    assert cookie.attrs["path"] == "/"
    assert "httponly" not in cookie.attrs
    assert "secure" not in cookie.attrs
    assert client.get("/read").json == {"user": "alice"}

    app.config["SESSION_COOKIE_NAME"] = "renamed"
    assert client.get("/read").json == {}


@dataclass(frozen=True)
class Change:
    """A setting changed after its session was used: the next request must show it."""

    value: Any
    path: str  # the request after the change
    shows: Callable[[TestResponse, CountingStore, str], bool]  # (response, store, session id)
    before: dict[str, Any] = field(default_factory=dict)  # other settings, set first


def forgotten(response: TestResponse, store: CountingStore, session_id: str) -> bool:
    return response.json == {}


def cookie_attribute(name: str, value: str | None) -> Callable[..., bool]:
    """The response re-sends the session cookie with (``None``: without) attribute ``name``."""

    def shows(response: TestResponse, store: CountingStore, session_id: str) -> bool:
        attrs = [cookie.attrs for cookie in set_cookies(response)]
        return len(attrs) == 1 and attrs[0].get(name) == value

    return shows


def sealed(response: TestResponse, store: CountingStore, session_id: str) -> bool:
    found = store.inner.load(store_key(session_id))
    return found is not None and found[0].startswith(b"1s ")


# Every setting the adapter reads, changed under a permanent session that a
# request already used (so its policy and backend are cached under the old
# values); the cases must cover SETTINGS and docs/flask.md's table exactly.
SETTING_CHANGES = {
    "SECRET_KEY": Change("another-secret-0123456789abcdef0123456789", "/read", forgotten),
    "SECRET_KEY_FALLBACKS": Change(
        [SECRET],
        "/read",
        lambda response, store, session_id: response.json == {"user": "alice"},
        before={"SECRET_KEY": "another-secret-0123456789abcdef0123456789"},
    ),
    "SESSION_COOKIE_NAME": Change("renamed", "/read", forgotten),
    "SESSION_COOKIE_DOMAIN": Change(
        "example.test", "/nothing", cookie_attribute("domain", "example.test")
    ),
    "SESSION_COOKIE_PATH": Change("/shop", "/nothing", cookie_attribute("path", "/shop")),
    "APPLICATION_ROOT": Change("/app", "/nothing", cookie_attribute("path", "/app")),
    "SESSION_COOKIE_HTTPONLY": Change(False, "/nothing", cookie_attribute("httponly", None)),
    "SESSION_COOKIE_SECURE": Change(True, "/nothing", cookie_attribute("secure", "")),
    "SESSION_COOKIE_SAMESITE": Change("Strict", "/nothing", cookie_attribute("samesite", "Strict")),
    "SESSION_COOKIE_PARTITIONED": Change(True, "/nothing", cookie_attribute("partitioned", "")),
    "PERMANENT_SESSION_LIFETIME": Change(
        timedelta(seconds=600), "/set", cookie_attribute("max-age", "600")
    ),
    # A request that reads its session: the cached lifetime's refresh_each_request
    # decides whether the permanent cookie is re-sent.
    "SESSION_REFRESH_EACH_REQUEST": Change(
        False, "/read", lambda response, store, session_id: not set_cookies(response)
    ),
    "SESSION_SEAL_RECORDS": Change(True, "/set", sealed),
    # The cookie no longer verifies (another secret); a source then adopts it.
    "SESSION_MIGRATE_FROM": Change(
        lambda host: ClaimsEveryCookie(),
        "/read",
        lambda response, store, session_id: response.json == {"adopted": True},
        before={"SECRET_KEY": "another-secret-0123456789abcdef0123456789"},
    ),
    # Adopted by the request before the change; with no grace window it opens nothing.
    "SESSION_MIGRATE_GRACE": Change(
        0,
        "/read",
        forgotten,
        before={
            "SECRET_KEY": "another-secret-0123456789abcdef0123456789",
            "SESSION_MIGRATE_FROM": lambda host: ClaimsEveryCookie(),
        },
    ),
    "SESSION_REQUIRE_SEALED": Change(
        True, "/read", forgotten, before={"SESSION_SEAL_RECORDS": True}
    ),
}


class ClaimsEveryCookie:
    """A stand-in migration source that adopts any cookie: shows only that the setting is read."""

    description = "every cookie"
    cookie = None

    def identify(self, cookie: str) -> str:
        return cookie

    def claim(self, cookie: str) -> Claim:
        return Claim({"adopted": True}, False, None)

    def retire(self, claim: Claim) -> None:
        pass

    def ping(self) -> None:
        pass


# Acts on the old system only (its record left in place): tests/test_migrate_flask_session.py.
NOT_SEEN_BY_THE_NEXT_REQUEST = {"SESSION_MIGRATE_KEEP_OLD"}


def test_the_settings_changed_here_are_those_read_and_documented() -> None:
    page = Path(__file__).parent.parent.joinpath("docs", "flask.md").read_text()
    table = page.split("| Flask setting | effect |\n", 1)[1].split("\n\n", 1)[0]
    rows = table.splitlines()[1:]  # after the |---| line
    documented = set()
    for row in rows:
        for name in re.findall(r"`([A-Z_]+)`", row.split(" | ")[0]):
            # "`SESSION_COOKIE_NAME`, `_DOMAIN`, ...": the shorthand shares the prefix.
            documented.add("SESSION_COOKIE" + name if name.startswith("_") else name)

    assert set(SETTING_CHANGES) | NOT_SEEN_BY_THE_NEXT_REQUEST == set(SETTINGS) == documented


@pytest.mark.parametrize("name", sorted(SETTING_CHANGES))
def test_a_setting_changed_after_requests_used_it_applies_to_the_next_request(
    store: CountingStore, clock: FakeClock, name: str
) -> None:
    change = SETTING_CHANGES[name]
    app = make_app(store, clock)
    client = app.test_client(use_cookies=False)
    created = one_cookie(client.get("/permanent/1"))
    cookie = {"Cookie": f"session={created.value}"}
    app.config.update(change.before)
    before = client.get(change.path, headers=cookie)
    assert not change.shows(before, store, created.session_id)

    app.config[name] = change.value
    after = client.get(change.path, headers=cookie)

    assert change.shows(after, store, created.session_id)


def test_clearing_sends_a_deletion_cookie_with_the_same_attributes(
    app: Flask, client: FlaskClient, store: CountingStore
) -> None:
    app.add_url_rule("/shop/clear", view_func=app.view_functions["clear"])
    app.config.update(
        SESSION_COOKIE_DOMAIN="example.test",
        SESSION_COOKIE_PATH="/shop",
        SESSION_COOKIE_SECURE=True,
        SESSION_COOKIE_SAMESITE="Strict",
        SESSION_COOKIE_PARTITIONED=True,
    )
    base = "https://www.example.test"
    created = one_cookie(client.get("/set", base_url=base))
    attributes = ("domain", "path", "secure", "samesite", "partitioned")
    assert {name: created.attrs.get(name) for name in attributes} == {
        "domain": "example.test",
        "path": "/shop",
        "secure": "",
        "samesite": "Strict",
        "partitioned": "",
    }

    deleted = one_cookie(client.get("/shop/clear", base_url=base))

    assert deleted.expires_now
    assert {name: deleted.attrs.get(name) for name in attributes} == {
        name: created.attrs.get(name) for name in attributes
    }
    assert stored_data(store, created.session_id) is None


def test_partitioned_implies_secure_as_in_flask(app: Flask, client: FlaskClient) -> None:
    app.config["SESSION_COOKIE_PARTITIONED"] = True  # werkzeug sets Secure for it

    cookie = one_cookie(client.get("/set"))

    assert "secure" in cookie.attrs and "partitioned" in cookie.attrs


@pytest.mark.parametrize("when", ["before init_app", "after init_app"])
def test_invalid_samesite_raises_value_error_like_flask(store: CountingStore, when: str) -> None:
    app = Flask(__name__)
    app.testing = True
    app.config["SECRET_KEY"] = SECRET

    @app.get("/")
    def index() -> str:
        session["x"] = 1
        return "ok"

    if when == "before init_app":
        app.config["SESSION_COOKIE_SAMESITE"] = "Sometimes"
        with pytest.raises(ValueError, match="SESSION_COOKIE_SAMESITE must be"):
            Session(app, store=store)
        return
    Session(app, store=store)
    app.config["SESSION_COOKIE_SAMESITE"] = "Sometimes"
    with pytest.raises(ValueError, match="SESSION_COOKIE_SAMESITE must be"):
        app.test_client().get("/")


def test_application_root_is_the_cookie_path_under_a_script_name(
    app: Flask, client: FlaskClient
) -> None:
    app.config["APPLICATION_ROOT"] = "/prefix"  # the test client mounts the app there

    response = client.get("/set")

    assert response.request.environ["SCRIPT_NAME"] == "/prefix"
    assert one_cookie(response).attrs["path"] == "/prefix"
    assert client.get("/read").json == {"user": "alice"}

    app.config["SESSION_COOKIE_PATH"] = "/prefix/shop"
    assert one_cookie(client.get("/clear")).attrs["path"] == "/prefix/shop"


@pytest.mark.parametrize(
    ("setting", "value", "message"),
    [
        (
            "PERMANENT_SESSION_LIFETIME",
            timedelta(0),
            "PERMANENT_SESSION_LIFETIME must be between 1 and",
        ),
        ("SECRET_KEY_FALLBACKS", OLD_SECRET, "SECRET_KEY_FALLBACKS must be a list"),
        (
            "SESSION_COOKIE_SAMESITE",
            "None",
            "SESSION_COOKIE_SAMESITE='None' requires SESSION_COOKIE_SECURE=True",
        ),
        ("SESSION_COOKIE_PATH", "shop", "SESSION_COOKIE_PATH .or APPLICATION_ROOT. must start"),
    ],
)
def test_a_bad_setting_fails_the_request_with_its_name(
    app: Flask, client: FlaskClient, setting: str, value: Any, message: str
) -> None:
    app.config[setting] = value

    with pytest.raises(ConfigurationError, match=message):
        client.get("/read")


def test_bad_options_fail_at_construction_with_their_name(store: CountingStore) -> None:
    app = Flask(__name__)
    with pytest.raises(ConfigurationError, match="on_store_error"):
        Session(app, store=store, on_store_error="ignore")  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="absolute_timeout"):
        Session(app, store=store, absolute_timeout=0)
    app.config["SECRET_KEY"] = SECRET
    with pytest.raises(ConfigurationError, match="store must implement"):
        Session(app, store=object())  # type: ignore[arg-type]


# -- keys ---------------------------------------------------------------------------


@pytest.mark.parametrize("container", [list, tuple, set], ids=lambda kind: kind.__name__)
def test_secret_key_fallbacks_still_verify_and_the_cookie_is_resigned(
    app: Flask, client: FlaskClient, container: Callable[[list[str]], Any]
) -> None:
    # Flask takes any iterable of fallback keys: a set as well as a list.
    app.config["SECRET_KEY"] = OLD_SECRET
    old = one_cookie(client.get("/set"))
    app.config.update(SECRET_KEY=SECRET, SECRET_KEY_FALLBACKS=container([OLD_SECRET]))

    response = client.get("/read")

    assert response.json == {"user": "alice"}
    resigned = one_cookie(response)
    assert resigned.session_id == old.session_id
    assert resigned.value != old.value
    app.config["SECRET_KEY_FALLBACKS"] = []
    assert client.get("/read").json == {"user": "alice"}


def test_a_new_secret_key_without_fallbacks_invalidates_sessions(
    app: Flask, client: FlaskClient
) -> None:
    client.get("/set")
    app.config["SECRET_KEY"] = OLD_SECRET

    response = client.get("/read")

    assert response.json == {}
    # As Flask: a cookie that does not verify is left alone (see test_drop_in_flask.py).
    assert set_cookies(response) == []


def test_without_secret_key_reading_works_and_writing_raises_flasks_error(
    app: Flask, client: FlaskClient, store: CountingStore
) -> None:
    app.config["SECRET_KEY"] = None

    assert client.get("/read").json == {}
    with pytest.raises(RuntimeError, match="no secret key was set"):
        client.get("/set")
    assert store.total == 0

    app.config["SECRET_KEY"] = SECRET
    client.get("/set")
    assert client.get("/read").json == {"user": "alice"}


def test_without_secret_key_a_write_to_the_environs_session_is_refused(
    app: Flask, client: FlaskClient, store: CountingStore
) -> None:
    @app.get("/raw")
    def raw() -> str:
        request.environ["wsgi_session"]["user"] = "alice"
        return "ok"

    app.config["SECRET_KEY"] = ""

    with pytest.raises(RuntimeError, match="no secret key was set"):
        client.get("/raw")
    assert store.total == 0


# -- what extensions do with the session -------------------------------------------


class User(UserMixin):
    def __init__(self, user_id: str) -> None:
        self.id = user_id


def add_login(app: Flask) -> None:
    """Flask-Login, with the two lines a login and a logout view should have."""
    manager = LoginManager(app)
    manager.user_loader(lambda user_id: User(user_id) if user_id == "alice" else None)

    @app.post("/login")
    def login() -> str:
        session.regenerate()
        login_user(User(request.form["user"]), remember=True)
        return session.id

    @app.post("/logout")
    def logout() -> str:
        session.destroy()
        logout_user()  # after destroy(): it asks for the remember cookie to be cleared
        return "bye"

    @app.get("/me")
    @login_required
    def me() -> str:
        return str(current_user.id)


def test_flask_login_flow_regenerates_on_login_and_destroys_on_logout(
    app: Flask, client: FlaskClient, store: CountingStore
) -> None:
    add_login(app)
    assert client.get("/me").status_code == 401
    before_login = session_id(client.get("/set"))

    login = client.post("/login", data={"user": "alice"})

    after_login = session_id(login)
    assert after_login == login.text != before_login
    assert stored_data(store, before_login) is None  # the planted id is worthless
    data = stored_data(store, after_login)
    assert data is not None
    assert (data["user"], data["_user_id"], data["_fresh"]) == ("alice", "alice", True)
    assert client.get_cookie("remember_token") is not None
    assert client.get("/me").text == "alice"

    logout = client.post("/logout")

    cookies = {cookie.name: cookie for cookie in set_cookies(logout)}
    assert cookies["session"].expires_now
    assert cookies["remember_token"].expires_now
    assert stored_data(store, after_login) is None
    assert client.get("/me").status_code == 401


def test_an_unauthorized_flash_is_read_in_the_context_the_test_client_keeps(
    app: Flask, client: FlaskClient, store: CountingStore
) -> None:
    """What Flask-Login's own tests do: a request, then its flash read after it."""
    add_login(app)
    app.add_url_rule("/login-form", "login_form", lambda: "form")
    manager: LoginManager = app.login_manager  # type: ignore[attr-defined]
    manager.login_view = "login_form"
    message = (manager.login_message, manager.login_message_category)

    with client:
        response = client.get("/me")
        assert response.status_code == 302  # unauthorized(): flash, then the login form
        assert get_flashed_messages(with_categories=True) == [message[::-1]]
        assert "_flashes" not in session  # popped, from this request's copy
        flash("only in memory")
        session["late"] = True
    # As with Flask's own sessions, the changes made after the request were not
    # kept: what the response stored (the flash, for the next page) is what is stored.
    stored = stored_data(store, one_cookie(response).session_id)
    assert stored is not None
    assert stored["_flashes"] == [message[::-1]]
    assert "late" not in stored
    with client:
        client.get("/login-form")
        assert get_flashed_messages() == [manager.login_message]


def test_a_change_in_teardown_request_is_taken_as_flask_takes_it(
    app: Flask, client: FlaskClient, store: CountingStore
) -> None:
    """After a response that is not streamed: in that request's copy, never stored."""
    seen: list[object] = []

    @app.teardown_request
    def late(error: BaseException | None) -> None:
        session["late"] = True
        seen.append(session.get("late"))

    response = client.get("/set")

    assert response.status_code == 200 and seen == [True]
    assert stored_data(store, response.text) == {"user": "alice"}


def test_a_change_while_a_streamed_body_is_sent_raises_sealed(
    app: Flask, client: FlaskClient, store: CountingStore
) -> None:
    ids: list[str] = []

    @app.get("/stream")
    def stream() -> Response:
        session["before"] = 1
        ids.append(session.id)

        def body() -> Iterator[str]:
            yield "a"
            session["late"] = 2  # the response has started: it would be lost
            yield "b"

        return Response(stream_with_context(body()))

    for keep_context in (False, True):
        kept = client if keep_context else contextlib.nullcontext()
        with kept, pytest.raises(SessionSealed, match="start_response"):
            client.get("/stream", buffered=True)
    assert len(ids) == 2
    assert all(stored_data(store, session_id) == {"before": 1} for session_id in ids)


def test_csrf_token_kept_in_the_session_validates_the_next_post(
    app: Flask, client: FlaskClient
) -> None:
    @app.get("/form")
    def form() -> str:
        if "csrf_token" not in session:  # what Flask-WTF does
            session["csrf_token"] = secrets.token_hex(20)
        return str(session["csrf_token"])

    @app.post("/form")
    def submit() -> str:
        if not hmac.compare_digest(request.form.get("csrf_token", ""), session["csrf_token"]):
            abort(400)
        return "accepted"

    token = client.get("/form").text
    assert client.get("/form").text == token

    assert client.post("/form", data={"csrf_token": token}).text == "accepted"
    assert client.post("/form", data={"csrf_token": "forged"}).status_code == 400


# -- failures and other stores ------------------------------------------------------


def test_a_save_the_store_refused_answers_503(client: FlaskClient, store: CountingStore) -> None:
    store.fail = {"save"}

    response = client.get("/set")

    assert response.status_code == 503
    assert "Set-Cookie" not in response.headers


def test_a_store_outage_under_flask_login_answers_503_not_500(
    app: Flask, client: FlaskClient, store: CountingStore
) -> None:
    """Flask-Login reads the session again after the view (its remember cookie), and
    SESSION_REFRESH_EACH_REQUEST tries to load it once more: the 503 must survive both."""
    add_login(app)
    app.testing = False  # Flask answers the error itself, as in production
    client.post("/login", data={"user": "alice"})
    store.fail = {"load"}  # fault injection: the in-process store cannot fail on its own

    response = client.get("/me")

    assert response.status_code == 503
    store.fail = set()
    assert client.get("/me").text == "alice"


def test_sqlite_store_keeps_flask_sessions(tmp_path: Path) -> None:
    from wsgi_session.stores.sqlite import SQLiteStore

    store = SQLiteStore(tmp_path / "sessions.sqlite3")
    client = make_app(store).test_client()

    client.get("/set")
    client.get("/permanent/1")

    assert client.get("/read").json == {"user": "alice"}
    assert make_app(store).test_client().get("/read").json == {}


def test_the_owner_follows_flask_login_login_and_logout() -> None:
    app = Flask(__name__)
    app.config["SECRET_KEY"] = SECRET
    extension = Session(app, store=MemoryStore())
    add_login(app)
    laptop, phone = app.test_client(), app.test_client()
    for client in (laptop, phone):
        assert client.post("/login", data={"user": "alice"}).status_code == 200
    sessions = app.extensions["wsgi_session"].sessions
    assert len(sessions.of("alice")) == 2
    assert extension.store is not None

    phone.post("/logout")
    assert len(sessions.of("alice")) == 1
    assert sessions.revoke("alice") == 1
    # Flask-Login's remember-me cookie is not a session: it logs the laptop in
    # again (a new session) until the application invalidates it too.
    assert laptop.get("/me").status_code == 200
    assert len(sessions.of("alice")) == 1
    assert sessions.revoke("alice") == 1
    laptop.delete_cookie("remember_token")
    assert laptop.get("/me").status_code == 401


def test_the_store_url_in_session_store_keeps_the_sessions_in_postgres(
    shared_postgres: PostgresServer, table: str
) -> None:
    app = Flask(__name__)
    app.config["SECRET_KEY"] = SECRET
    app.config["SESSION_STORE"] = f"{shared_postgres.url}?table={table}"

    @app.get("/count")
    def count() -> str:
        session["n"] = session.get("n", 0) + 1
        return str(session["n"])

    Session(app)
    client = app.test_client()
    assert [client.get("/count").text for _ in range(3)] == ["1", "2", "3"]
    assert shared_postgres.query(f'SELECT count(*) FROM "{table}"') == [(1,)]  # noqa: S608


def test_a_bad_session_store_url_names_the_setting_and_hides_the_password() -> None:
    app = Flask(__name__)
    app.config["SECRET_KEY"] = SECRET
    app.config["SESSION_STORE"] = "postgresql://app:hunter2@db/app?sslmode=sometimes"
    with pytest.raises(ConfigurationError) as raised:
        Session(app)
    assert str(raised.value).startswith("app.config: SESSION_STORE: store URL ")
    assert "sslmode" in str(raised.value)
    assert "hunter2" not in str(raised.value)

"""The cookie store over HTTP: the whole session in a signed (or encrypted) cookie."""

from __future__ import annotations

import ast
import random
import re
import string
import subprocess
import sys
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any

import pytest
from helpers import ROUTES, SECRET, START, Action, FakeClock, one_cookie, session_app, set_cookies
from itsdangerous.encoding import base64_decode, base64_encode
from werkzeug.test import Client, TestResponse

from wsgi_session import (
    ConfigurationError,
    KeyRing,
    MemoryStore,
    Session,
    SessionMiddleware,
    SessionTooLarge,
)
from wsgi_session.backends import cookie as cookie_store
from wsgi_session.backends.cookie import SIGN_PURPOSE, CookieStore
from wsgi_session.serialization import dumps, loads
from wsgi_session.session import new_session_id

OLD_SECRET = "old-secret-0123456789abcdef0123456789abcdef"
NAME = "session"
DAY = 24 * 3600


def blob(size: int) -> Action:
    """Store ``size`` characters that zlib cannot shrink much."""

    def action(session: Session) -> None:
        session["blob"] = "".join(random.Random(size).choices(string.ascii_letters, k=size))

    return action


def repetitive(session: Session) -> None:
    session["rows"] = ["the same row of text, again and again"] * 50  # 2 KB of JSON


def typed(session: Session) -> None:
    session["typed"] = {
        "tuple": (1, "two"),
        "when": datetime(2024, 5, 6, 7, 8, 9, tzinfo=timezone.utc),
        "tags": {"a", "b"},
        "raw": b"\x00\xff",
        "price": Decimal("9.99"),
    }


COOKIE_ROUTES: dict[str, Action] = {
    **ROUTES,
    "dumps": lambda session: dumps(dict(session)),
    "secret": lambda session: session.update(card="4111-1111-1111-1111"),
    "repetitive": repetitive,
    "typed": typed,
    "idle30": lambda session: setattr(session, "idle_timeout", 30),
    "destroy-and-set": lambda session: (session.destroy(), session.update(user="bob")),
    "many": lambda session: session.update(small="x", medium="y" * 300),
}


def make(
    store: CookieStore | None = None,
    routes: dict[str, Action] | None = None,
    **options: Any,
) -> tuple[Client, SessionMiddleware, FakeClock]:
    clock = options.pop("clock", None) or FakeClock()
    options.setdefault("secret_key", SECRET)
    middleware = SessionMiddleware(
        session_app({**COOKIE_ROUTES, **(routes or {})}),
        store=store if store is not None else CookieStore(),
        clock=clock,
        **options,
    )
    return Client(middleware), middleware, clock


def send(middleware: SessionMiddleware, path: str, cookie: str) -> TestResponse:
    """A request carrying exactly ``cookie``, from a client that keeps no cookies."""
    client = Client(middleware, use_cookies=False)
    return client.get(path, headers={"Cookie": f"{NAME}={cookie}"})


def result(response: TestResponse) -> Any:
    assert response.status_code == 200, response.status
    return ast.literal_eval(response.get_data(as_text=True))


def cookie_value(client: Client) -> str:
    cookie = client.get_cookie(NAME)
    assert cookie is not None
    return cookie.value


def signed(body: bytes, marker: str = "S", secret: str = SECRET) -> str:
    """A cookie value signed with the store's real key: hostile content, valid signature."""
    return KeyRing(secret).signer(SIGN_PURPOSE).sign(marker + base64_encode(body).decode())


def body(text: str, codec: bytes = b"j", now: float = START) -> bytes:
    """A cookie body in format 1, live at ``now``: codec, metadata, tagged JSON."""
    return codec + f"{int(now)} {int(now)} 0 0 n0nce {text}".encode()


def opened(value: str) -> bytes:
    """What anyone can read in a cookie value: its base64 body, decoded."""
    return base64_decode(value[1:].split(".")[0])


B64 = string.ascii_uppercase + string.ascii_lowercase + string.digits + "-_"


def flip(value: str, index: int) -> str:
    """``value`` with one character changed in its high bits (low ones may be padding)."""
    char = value[index]
    new = B64[(B64.index(char) + 32) % 64] if char in B64 else "A"
    index %= len(value)
    return value[:index] + new + value[index + 1 :]


# -- round trip and when a cookie is sent -------------------------------------


def test_round_trip_across_requests() -> None:
    client, _, _ = make()
    first = client.get("/set")
    assert one_cookie(first).value.startswith("S")
    assert result(client.get("/read")) == {"user": "alice"}
    client.get("/set2")
    assert result(client.get("/read")) == {"user": "alice", "cart": [1, 2]}


def test_typed_values_round_trip() -> None:
    client, _, _ = make()
    client.get("/typed")
    data = loads(result(client.get("/dumps")))
    assert data["typed"] == {
        "tuple": (1, "two"),
        "when": datetime(2024, 5, 6, 7, 8, 9, tzinfo=timezone.utc),
        "tags": {"a", "b"},
        "raw": b"\x00\xff",
        "price": Decimal("9.99"),
    }


def test_untouched_request_sends_no_session_headers() -> None:
    client, _, _ = make()
    client.get("/set")
    response = client.get("/nothing")
    assert "Set-Cookie" not in response.headers
    assert "Vary" not in response.headers


def test_empty_session_sends_no_cookie() -> None:
    client, _, _ = make()
    response = client.get("/read")
    assert result(response) == {}
    assert set_cookies(response) == []
    assert response.headers["Vary"] == "Cookie"


def test_unchanged_session_is_not_resent() -> None:
    client, _, clock = make()
    client.get("/set")
    clock.advance(5)
    response = client.get("/read")
    assert result(response) == {"user": "alice"}
    assert set_cookies(response) == []


def test_nested_change_is_saved() -> None:
    client, _, _ = make(routes={"append": lambda session: session["cart"].append(3)})
    client.get("/set2")
    assert one_cookie(client.get("/append"))
    assert result(client.get("/read")) == {"cart": [1, 2, 3]}


def test_clearing_every_key_expires_the_cookie() -> None:
    client, _, _ = make()
    client.get("/set")
    assert one_cookie(client.get("/clear")).expires_now
    assert client.get_cookie(NAME) is None


def test_permanent_cookie_gets_max_age_of_the_idle_timeout() -> None:
    client, _, _ = make(idle_timeout=600)
    client.get("/set")
    cookie = one_cookie(client.get("/permanent"))
    assert cookie.attrs["max-age"] == "600"
    assert "max-age" not in one_cookie(make()[0].get("/set")).attrs


def test_refresh_each_request_resends_a_permanent_cookie() -> None:
    client, _, clock = make(refresh_each_request=True, idle_timeout=600)
    client.get("/set")
    client.get("/permanent")
    clock.advance(1)
    assert one_cookie(client.get("/read")).attrs["max-age"] == "600"
    plain, _, _ = make(idle_timeout=600)
    plain.get("/set")
    plain.get("/permanent")
    assert set_cookies(plain.get("/read")) == []


# -- hostile cookies --------------------------------------------------------------


def _hostile() -> list[tuple[str, str]]:
    client, _, _ = make()
    client.get("/set")
    good = cookie_value(client)
    head, sig = good.rsplit(".", 1)
    nonce = new_session_id()
    server_side_id = KeyRing(SECRET).signer("wsgi_session.id").sign(nonce)
    return [
        ("empty", ""),
        ("whitespace", "   "),
        ("10 KB", "S" + "A" * 10240),
        ("10 KB signed", signed(body(dumps({"big": "x" * 10240})))),
        ("not base64", "S!!!*** not base64 ***."),
        ("no signature", head),
        ("bad signature", f"{head}.{'A' * len(sig)}"),
        ("signature only", sig),
        ("re-ordered", f"{sig}.{head}"),
        ("truncated", good[:-5]),
        ("truncated body", good[:10] + good[20:]),
        ("other secret", signed(body('{"user":"mallory"}'), secret=OLD_SECRET)),
        ("server-side id cookie", server_side_id),
        ("signed id as payload", signed(nonce.encode())),
        ("valid signature, invalid base64", KeyRing(SECRET).signer(SIGN_PURPOSE).sign("S*!@")),
        ("valid signature, broken JSON", signed(body('{"user": "al'))),
        ("valid signature, JSON not an object", signed(body("[1, 2]"))),
        ("valid signature, bad tag", signed(body('{"x": {" D": "nope"}}'))),
        ("valid signature, broken zlib", signed(b"z" + b"this is not zlib")),
        ("valid signature, missing fields", signed(b"j1 2 3")),
        ("valid signature, bad number", signed(b"j" + b"x 1 0 0 n {}")),
        ("valid signature, not UTF-8", signed(body("{}") + b"\xff\xfe")),
        ("valid signature, expired", signed(body('{"user":"alice"}', now=START - 15 * DAY))),
        ("valid signature, unknown codec", signed(body('{"user":"alice"}', b"q"))),
        ("valid signature, unknown format", signed(body('{"user":"alice"}'), "X")),
        ("encrypted format in signed store", "E" + base64_encode(b"\x00" * 40).decode()),
        # UTF-8 bytes, as a WSGI server puts them in the environ (decoded as latin-1)
        ("non-ASCII", "Sé.ü".encode().decode("latin-1")),
    ]


HOSTILE = _hostile()


@pytest.mark.parametrize(("name", "value"), HOSTILE, ids=[name for name, _ in HOSTILE])
def test_hostile_cookie_gets_a_fresh_empty_session(name: str, value: str) -> None:
    _, middleware, _ = make()
    response = send(middleware, "/read", value)
    assert result(response) == {}
    assert all(cookie.expires_now for cookie in set_cookies(response))
    # and a write replaces it with a working cookie
    fresh = one_cookie(send(middleware, "/set", value))
    assert send(middleware, "/read", fresh.value).get_data(as_text=True) == "{'user': 'alice'}"


def test_crafted_payloads_are_valid_apart_from_their_flaw() -> None:
    _, middleware, _ = make()
    good = signed(body('{"user":"alice"}'))
    assert result(send(middleware, "/read", good)) == {"user": "alice"}


@pytest.mark.parametrize("position", [0, 1, 5, 20, 40, -30, -1])
def test_any_tampered_byte_is_refused(position: int) -> None:
    client, middleware, _ = make()
    client.get("/set")
    value = cookie_value(client)
    assert result(send(middleware, "/read", value)) == {"user": "alice"}
    assert result(send(middleware, "/read", flip(value, position))) == {}


def test_server_side_middleware_refuses_a_cookie_store_value() -> None:
    client, _, _ = make()
    client.get("/set")
    server_side = SessionMiddleware(session_app(ROUTES), SECRET, store=MemoryStore())
    assert result(send(server_side, "/read", cookie_value(client))) == {}


# -- timeouts ---------------------------------------------------------------------


def test_replayed_cookie_past_the_idle_timeout_is_refused() -> None:
    client, middleware, clock = make(idle_timeout=100)
    client.get("/set")
    copy = cookie_value(client)
    clock.advance(99)
    assert result(send(middleware, "/read", copy)) == {"user": "alice"}
    clock.advance(2)
    response = send(middleware, "/read", copy)
    assert result(response) == {}
    assert one_cookie(response).expires_now


def test_reading_refreshes_the_cookie_and_old_copies_still_expire() -> None:
    client, middleware, clock = make(idle_timeout=100, refresh_interval=10)
    client.get("/set")
    old_copy = cookie_value(client)
    clock.advance(50)
    refreshed = one_cookie(client.get("/read"))  # older than refresh_interval: re-sent
    assert refreshed.value != old_copy
    clock.advance(60)  # 110 s after the first cookie, 60 s after the refresh
    assert result(client.get("/read")) == {"user": "alice"}
    assert result(send(middleware, "/read", old_copy)) == {}


def test_per_session_idle_timeout_is_enforced() -> None:
    client, middleware, clock = make(idle_timeout=1000)
    client.get("/set")
    client.get("/idle30")
    copy = cookie_value(client)
    clock.advance(31)
    assert result(send(middleware, "/read", copy)) == {}


def test_short_per_session_idle_timeout_is_refreshed_in_time() -> None:
    client, _, clock = make(idle_timeout=1000)
    client.get("/set")
    client.get("/idle30")
    for _ in range(3):
        clock.advance(20)
        assert one_cookie(client.get("/read"))  # due long before the global interval
    assert result(client.get("/read")) == {"user": "alice"}


def test_absolute_timeout_ends_an_active_session() -> None:
    client, middleware, clock = make(idle_timeout=100, absolute_timeout=300, refresh_interval=0)
    client.get("/set")
    for _ in range(4):
        clock.advance(60)
        assert result(client.get("/read")) == {"user": "alice"}
    latest = cookie_value(client)  # written 240 s in, still idle-valid for 100 s
    clock.advance(61)
    assert result(send(middleware, "/read", latest)) == {}


# -- secret rotation -------------------------------------------------------------


@pytest.mark.parametrize("encrypt", [False, True], ids=["signed", "encrypted"])
def test_rotation_accepts_old_secret_and_resigns_with_the_new_one(encrypt: bool) -> None:
    old, _, _ = make(CookieStore(encrypt=encrypt), secret_key=OLD_SECRET)
    old.get("/set")
    old_value = cookie_value(old)

    _, rotated, _ = make(
        CookieStore(encrypt=encrypt), secret_key=SECRET, fallback_keys=[OLD_SECRET]
    )
    response = send(rotated, "/read", old_value)
    assert result(response) == {"user": "alice"}
    new_value = one_cookie(response).value
    assert new_value != old_value

    _, new_only, _ = make(CookieStore(encrypt=encrypt), secret_key=SECRET)
    assert result(send(new_only, "/read", new_value)) == {"user": "alice"}
    assert result(send(new_only, "/read", old_value)) == {}
    # a cookie already under the current key is not re-sent
    assert set_cookies(send(rotated, "/read", new_value)) == []


# -- size guard ------------------------------------------------------------------


def _largest_fitting(prepare: Action, **options: Any) -> int:
    """The longest blob that still makes a cookie, found by bisection over HTTP."""

    def client_for(size: int) -> Client:
        def route(session: Session) -> None:
            prepare(session)
            blob(size)(session)

        return make(CookieStore(compress=False), {"blob": route}, **options)[0]

    low, high = 0, 8000
    while high - low > 1:
        middle = (low + high) // 2
        try:
            client_for(middle).get("/blob", base_url=BASE_URL)
        except SessionTooLarge:
            high = middle
        else:
            low = middle
    return low


BASE_URL = "https://sessions.example.com"
BOUNDARY_OPTIONS = {
    "defaults": {},
    "long path and domain": {
        "cookie_path": "/" + "p" * 300,
        "cookie_domain": "sessions.example.com",
        "cookie_secure": True,
        "cookie_name": "__Secure-long-session-cookie-name",
    },
}


@pytest.mark.parametrize("options", BOUNDARY_OPTIONS.values(), ids=BOUNDARY_OPTIONS.keys())
@pytest.mark.parametrize("permanent", [False, True], ids=["browser-session", "permanent"])
def test_four_kilobyte_boundary(options: dict[str, Any], permanent: bool) -> None:
    prepare = ROUTES["permanent"] if permanent else ROUTES["nothing"]
    size = _largest_fitting(prepare, **options)
    assert 2000 < size < 4093

    def fits(session: Session) -> None:
        prepare(session)
        blob(size)(session)

    def too_big(session: Session) -> None:
        prepare(session)
        blob(size + 1)(session)

    client, _, _ = make(CookieStore(compress=False), {"fits": fits, "too-big": too_big}, **options)
    response = client.get("/fits", base_url=BASE_URL)
    assert response.status_code == 200
    header = response.headers["Set-Cookie"]
    # One more byte of data adds one or two base64 characters.
    assert 4092 <= len(header) <= 4093
    assert ("Max-Age=" in header) is permanent

    with pytest.raises(SessionTooLarge) as error:
        client.get("/too-big", base_url=BASE_URL)
    message = str(error.value)
    assert "'blob'" in message
    assert "max_size=4093" in message
    assert re.search(r"would be 409[45] bytes", message)


def test_too_large_names_the_largest_keys_first_and_never_answers_2xx() -> None:
    _, middleware, _ = make(CookieStore(compress=False, max_size=300), on_store_error="degrade")
    with pytest.raises(SessionTooLarge, match=r"largest keys: 'medium' \(\d+ bytes\), 'small'"):
        Client(middleware).get("/many")


def test_cookie_longer_than_max_size_is_refused() -> None:
    client, _, _ = make(CookieStore(max_size=4093))
    client.get("/set")
    _, small, _ = make(CookieStore(max_size=100))
    assert result(send(small, "/read", cookie_value(client))) == {}


# -- destroy, regenerate ---------------------------------------------------------


def test_destroy_expires_the_cookie() -> None:
    client, _, _ = make()
    client.get("/set")
    cookie = one_cookie(client.get("/destroy"))
    assert cookie.expires_now
    assert result(client.get("/read")) == {}


def test_destroy_then_set_issues_a_new_session() -> None:
    client, _, _ = make()
    client.get("/set")
    old_id = result(client.get("/id"))
    assert not one_cookie(client.get("/destroy-and-set")).expires_now
    assert result(client.get("/read")) == {"user": "bob"}
    assert result(client.get("/id")) != old_id


def test_regenerate_reissues_the_cookie_with_a_new_nonce() -> None:
    client, middleware, _ = make()
    client.get("/set")
    old_value = cookie_value(client)
    old_id = result(client.get("/id"))
    new_value = one_cookie(client.get("/regenerate")).value
    assert new_value != old_value
    new_id = result(client.get("/id"))
    assert new_id != old_id
    assert result(client.get("/read")) == {"user": "alice"}
    # An old copy still loads (a cookie store cannot revoke) but is told apart.
    assert result(send(middleware, "/id", old_value)) == old_id
    assert result(send(middleware, "/id", new_value)) == new_id


def test_id_is_stable_across_requests() -> None:
    client, _, clock = make(refresh_interval=0)
    client.get("/set")
    first = result(client.get("/id"))
    clock.advance(10)
    client.get("/set2")
    assert result(client.get("/id")) == first


# -- encryption and compression ------------------------------------------------


def test_encryption_hides_the_plaintext_and_round_trips() -> None:
    signed_client, signed_only, _ = make(CookieStore())
    signed_client.get("/secret")
    assert b"4111-1111-1111-1111" in opened(cookie_value(signed_client))  # readable...

    client, _, _ = make(CookieStore(encrypt=True))
    client.get("/secret")
    value = cookie_value(client)
    assert value.startswith("E")
    assert b"4111" not in opened(value)  # ...unless encrypted
    assert b"card" not in opened(value)
    assert result(client.get("/read")) == {"card": "4111-1111-1111-1111"}
    assert result(send(signed_only, "/read", value)) == {}


@pytest.mark.parametrize("position", [1, 10, 30, -1])
def test_tampered_encrypted_cookie_is_refused(position: int) -> None:
    client, middleware, _ = make(CookieStore(encrypt=True))
    client.get("/secret")
    value = cookie_value(client)
    assert result(send(middleware, "/read", value)) == {"card": "4111-1111-1111-1111"}
    assert result(send(middleware, "/read", flip(value, position))) == {}


def test_compression_shrinks_large_repetitive_sessions() -> None:
    client, _, _ = make()
    client.get("/repetitive")
    value = cookie_value(client)
    assert len(value) < 400  # the data alone is 2 KB of JSON
    assert opened(value)[:1] == b"z"
    assert len(result(client.get("/read"))["rows"]) == 50


def test_tiny_sessions_are_not_compressed() -> None:
    client, _, _ = make()
    client.get("/set")
    body = opened(cookie_value(client))
    assert body[:1] == b"j"
    assert b'{"user":"alice"}' in body


def test_compression_is_kept_only_when_it_makes_the_cookie_shorter(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Without the size threshold zlib is tried on a tiny session, and loses: the
    # payload is random nonce and distinct digits, zlib adds 6 bytes of framing.
    monkeypatch.setattr(cookie_store, "COMPRESS_ABOVE", 0)
    client, _, clock = make(clock=FakeClock(1_769_384_521))
    client.get("/set")
    clock.advance(6916)
    client.get("/set2")
    assert opened(cookie_value(client))[:1] == b"j"
    client.get("/repetitive")
    assert opened(cookie_value(client))[:1] == b"z"


def test_compress_false_stores_repetitive_data_as_is() -> None:
    client, _, _ = make(CookieStore(compress=False))
    client.get("/repetitive")
    assert opened(cookie_value(client))[:1] == b"j"


def test_encrypted_cookies_are_not_compressed_unless_asked() -> None:
    default, _, _ = make(CookieStore(encrypt=True))
    default.get("/repetitive")
    asked, _, _ = make(CookieStore(encrypt=True, compress=True))
    asked.get("/repetitive")
    assert len(cookie_value(default)) > 2000
    assert len(cookie_value(asked)) < 400
    assert len(result(asked.get("/read"))["rows"]) == 50


# -- configuration ---------------------------------------------------------------


@pytest.mark.parametrize("max_size", [0, -1, "4093", True, 40.5])
def test_bad_max_size_fails_at_construction(max_size: Any) -> None:
    with pytest.raises(ConfigurationError, match="max_size"):
        CookieStore(max_size=max_size)


def test_encrypt_without_cryptography_names_the_setting_and_the_extra() -> None:
    # A real interpreter in which importing the cryptography package fails.
    code = (
        "import sys; sys.modules['cryptography'] = None\n"
        "from wsgi_session.backends.cookie import CookieStore\n"
        "CookieStore()\n"
        "CookieStore(encrypt=True)\n"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert run.returncode != 0
    assert "ConfigurationError" in run.stderr
    assert "encrypt=True" in run.stderr
    assert "wsgi-session[crypto]" in run.stderr

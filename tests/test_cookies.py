"""The session cookie: signed ids, tampering, secret rotation, cookie attributes."""

from __future__ import annotations

import logging
import re
import time
from typing import Any

import pytest
from helpers import (
    SECRET,
    CountingStore,
    make,
    one_cookie,
    set_cookies,
    store_key,
    stored_data,
)
from werkzeug.test import Client

from wsgi_session import ConfigurationError, KeyRing, MemoryStore, SessionMiddleware

OLD_SECRET = "old-secret-fedcba9876543210fedcba9876543210"
# The id, ".b" when the session is not permanent (a browser-session cookie), the signature.
SIGNED = re.compile(r"([A-Za-z0-9_-]{43})(\.b)?\.([A-Za-z0-9_-]+)")


def raw_client(store: CountingStore, **options: Any) -> Client:
    """A client that sends only the Cookie headers a test writes by hand."""
    client, _, _ = make(store=store, **options)
    return Client(client.application, use_cookies=False)


# -- ids ---------------------------------------------------------------------


def test_cookie_carries_a_signed_43_char_id_and_the_store_key_is_its_hash() -> None:
    client, _, store = make()

    cookie = one_cookie(client.get("/set"))

    match = SIGNED.fullmatch(cookie.value)
    assert match is not None, cookie.value
    session_id = match.group(1)
    assert store.inner.load(store_key(session_id)) is not None
    assert store.inner.load(session_id) is None
    assert session_id.encode() not in store.inner.load(store_key(session_id))[0]  # type: ignore[index]


def test_every_new_session_gets_its_own_id() -> None:
    ids = {one_cookie(make()[0].get("/set")).session_id for _ in range(20)}

    assert len(ids) == 20


def tampered(value: str) -> dict[str, str]:
    head, signature = value.rsplit(".", 1)  # head: the id, marked ".b" or not
    session_id, marked, mark = head.partition(".")
    flip = {"A": "B"}.get(signature[5], "A")
    other = {"A": "B"}.get(session_id[5], "A")
    return {
        "signature": f"{head}.{signature[:5]}{flip}{signature[6:]}",
        "id": f"{session_id[:5]}{other}{head[6:]}.{signature}",
        "unsigned": head,
        "swapped": f"{signature[:43]}{marked}{mark}.{session_id}",
        "garbage": "not-a-session",
        "oversized": "A" * 10_240,
        "empty": "",
        "extra": value + ".x",
        # The mark is signed with the id: added, dropped or changed, nothing verifies.
        "mark dropped": f"{session_id}.{signature}",
        "mark added": f"{head}.b.{signature}",
        "mark changed": f"{session_id}.c.{signature}",
    }


@pytest.mark.parametrize(
    "kind",
    [
        "signature",
        "id",
        "unsigned",
        "swapped",
        "garbage",
        "oversized",
        "empty",
        "extra",
        "mark dropped",
        "mark added",
        "mark changed",
    ],
)
def test_bad_cookie_gets_a_fresh_session_without_touching_the_store(kind: str) -> None:
    client, _, store = make()
    good = one_cookie(client.get("/set"))
    bad = tampered(good.value)[kind]
    raw = raw_client(store)
    store.calls.clear()

    read = raw.get("/read", headers={"Cookie": f"session={bad}"})
    written = raw.get("/set2", headers={"Cookie": f"session={bad}"})

    assert read.status_code == written.status_code == 200
    assert read.text == "{}"
    assert store.calls["load"] == 0
    fresh = one_cookie(written)
    assert fresh.session_id != good.session_id
    assert fresh.session_id not in bad
    assert stored_data(store, fresh.session_id) == {"cart": [1, 2]}
    assert stored_data(store, good.session_id) == {"user": "alice"}


def test_validly_signed_unknown_id_is_never_adopted() -> None:
    store = CountingStore()
    raw = raw_client(store)
    chosen = "A" * 43  # an id the client picked; signing it needs the secret
    forged = KeyRing(SECRET).signer("wsgi_session.id").sign(chosen)

    response = raw.get("/set", headers={"Cookie": f"session={forged}"})

    assert store.calls["load"] == 1
    fresh = one_cookie(response)
    assert fresh.session_id != chosen
    assert store.inner.load(store_key(chosen)) is None
    assert stored_data(store, fresh.session_id) == {"user": "alice"}


def test_cookie_signed_with_another_secret_is_rejected() -> None:
    client, _, store = make(secret_key=OLD_SECRET)
    old = one_cookie(client.get("/set"))
    raw = raw_client(store)
    store.calls.clear()

    response = raw.get("/read", headers={"Cookie": f"session={old.value}"})

    assert response.text == "{}"
    assert store.calls["load"] == 0


# -- secret rotation -----------------------------------------------------------


def test_fallback_key_verifies_and_the_cookie_is_resigned_with_the_current_key() -> None:
    old_client, _, store = make(secret_key=OLD_SECRET)
    old = one_cookie(old_client.get("/set"))
    raw = raw_client(store, fallback_keys=[OLD_SECRET])

    response = raw.get("/read", headers={"Cookie": f"session={old.value}"})

    assert response.text == "{'user': 'alice'}"
    resigned = one_cookie(response)
    assert resigned.session_id == old.session_id
    assert resigned.value != old.value
    current_only = raw_client(store)
    again = current_only.get("/read", headers={"Cookie": f"session={resigned.value}"})
    assert again.text == "{'user': 'alice'}"
    assert set_cookies(again) == []


def test_fallback_cookie_is_resigned_on_a_write_too() -> None:
    old_client, _, store = make(secret_key=OLD_SECRET)
    old = one_cookie(old_client.get("/set"))
    raw = raw_client(store, fallback_keys=["unused-fallback-" * 3, OLD_SECRET])

    response = raw.get("/set2", headers={"Cookie": f"session={old.value}"})

    resigned = one_cookie(response)
    assert resigned.value != old.value
    assert resigned.session_id == old.session_id
    assert stored_data(store, old.session_id) == {"user": "alice", "cart": [1, 2]}


def test_current_key_cookie_is_not_resigned_when_fallbacks_exist() -> None:
    client, _, _ = make(fallback_keys=[OLD_SECRET])
    client.get("/set")

    assert set_cookies(client.get("/read")) == []


@pytest.mark.parametrize("secret", ["", b""])
def test_empty_secret_is_refused(secret: str | bytes) -> None:
    with pytest.raises(ConfigurationError, match="secret_key"):
        SessionMiddleware(lambda e, s: [], secret, store=MemoryStore())


def test_a_single_string_as_fallback_keys_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="fallback_keys"):
        SessionMiddleware(lambda e, s: [], SECRET, store=MemoryStore(), fallback_keys=OLD_SECRET)


def test_short_secret_logs_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="wsgi_session"):
        SessionMiddleware(lambda e, s: [], "short", store=MemoryStore())

    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "secret_key" in warnings[0].getMessage()


def test_long_secret_logs_no_warning(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="wsgi_session"):
        SessionMiddleware(lambda e, s: [], SECRET, store=MemoryStore())

    assert caplog.records == []


# -- cookie attributes ---------------------------------------------------------


def test_default_cookie_attributes() -> None:
    client, _, _ = make()

    cookie = one_cookie(client.get("/set"))

    assert cookie.name == "session"
    assert cookie.attrs == {"httponly": "", "path": "/", "samesite": "Lax"}


def test_path_defaults_to_script_name_and_can_be_set() -> None:
    client, _, _ = make()
    mounted = one_cookie(client.get("/set", base_url="http://localhost/shop/"))
    assert mounted.attrs["path"] == "/shop"

    client, _, _ = make(cookie_path="/")
    assert one_cookie(client.get("/set", base_url="http://localhost/shop/")).attrs["path"] == "/"


@pytest.mark.parametrize(
    ("scheme", "setting", "secure"),
    [
        ("https", None, True),
        ("http", None, False),
        ("https", False, False),
        ("http", True, True),
    ],
)
def test_secure_follows_the_scheme_unless_set(
    scheme: str, setting: bool | None, secure: bool
) -> None:
    client, _, _ = make(cookie_secure=setting)

    cookie = one_cookie(client.get("/set", base_url=f"{scheme}://localhost/"))

    assert ("secure" in cookie.attrs) is secure


@pytest.mark.parametrize(("setting", "sent"), [("strict", "Strict"), ("LAX", "Lax"), (None, None)])
def test_samesite_is_normalized(setting: str | None, sent: str | None) -> None:
    client, _, _ = make(cookie_samesite=setting)

    cookie = one_cookie(client.get("/set"))

    assert cookie.attrs.get("samesite") == sent


def test_samesite_none_with_secure() -> None:
    client, _, _ = make(cookie_samesite="None", cookie_secure=True)

    cookie = one_cookie(client.get("/set"))

    assert cookie.attrs["samesite"] == "None"
    assert "secure" in cookie.attrs


def test_partitioned_and_domain_and_httponly_off() -> None:
    client, _, _ = make(
        cookie_partitioned=True,
        cookie_secure=True,
        cookie_domain="example.com",
        cookie_httponly=False,
        cookie_name="sid",
    )

    cookie = one_cookie(client.get("/set"))

    assert cookie.name == "sid"
    assert "partitioned" in cookie.attrs
    assert cookie.attrs["domain"] == "example.com"
    assert "httponly" not in cookie.attrs


def test_host_prefixed_cookie_is_pinned_to_the_root_path() -> None:
    client, _, _ = make(cookie_name="__Host-session", cookie_secure=True)

    cookie = one_cookie(client.get("/set", base_url="https://localhost/shop/"))

    assert cookie.name == "__Host-session"
    assert cookie.attrs["path"] == "/"
    assert "secure" in cookie.attrs
    assert "domain" not in cookie.attrs
    assert client.get("/read", base_url="https://localhost/shop/").text == "{'user': 'alice'}"


def test_custom_cookie_name_is_read_back() -> None:
    client, _, _ = make(cookie_name="__Secure-sid", cookie_secure=True)
    assert one_cookie(client.get("/set")).name == "__Secure-sid"

    assert client.get("/read").text == "{'user': 'alice'}"


@pytest.mark.parametrize(
    ("options", "names"),
    [
        ({"cookie_samesite": "Sometimes"}, "samesite"),
        ({"cookie_samesite": "None"}, "samesite"),
        ({"cookie_samesite": "None", "cookie_secure": False}, "samesite"),
        ({"cookie_partitioned": True}, "partitioned"),
        ({"cookie_name": "__Host-s"}, "__Host-s"),
        ({"cookie_name": "__Host-s", "cookie_secure": True, "cookie_domain": "a.b"}, "domain"),
        ({"cookie_name": "__Host-s", "cookie_secure": True, "cookie_path": "/app"}, "path"),
        ({"cookie_name": "__Secure-s"}, "__Secure-s"),
        ({"cookie_name": "__Secure-s", "cookie_secure": False}, "__Secure-s"),
        ({"cookie_name": ""}, "cookie_name"),
        ({"cookie_name": "a b"}, "cookie_name"),
        ({"cookie_name": "a;b"}, "cookie_name"),
        ({"cookie_path": "app"}, "cookie_path"),
        ({"idle_timeout": 0}, "idle_timeout"),
        ({"absolute_timeout": -1}, "absolute_timeout"),
        ({"refresh_interval": -1}, "refresh_interval"),
    ],
)
def test_bad_cookie_settings_fail_at_construction(options: dict[str, Any], names: str) -> None:
    with pytest.raises(ConfigurationError, match=re.escape(names)):
        SessionMiddleware(lambda e, s: [], SECRET, store=MemoryStore(), **options)


def test_cookie_is_parsed_among_other_cookies() -> None:
    client, _, store = make()
    good = one_cookie(client.get("/set"))
    raw = raw_client(store)

    response = raw.get("/read", headers={"Cookie": f"theme=dark; session={good.value}; sessionx=1"})

    assert response.text == "{'user': 'alice'}"


def test_similar_cookie_name_is_not_taken_for_the_session() -> None:
    client, _, store = make()
    good = one_cookie(client.get("/set"))
    raw = raw_client(store)
    store.calls.clear()

    response = raw.get("/read", headers={"Cookie": f"my_session={good.value}"})

    assert response.text == "{}"
    assert store.calls["load"] == 0


def test_a_non_utf8_byte_in_another_cookie_spoils_only_that_cookie() -> None:
    store = CountingStore()
    client, _, _ = make(store=store)
    signed = one_cookie(client.get("/set")).value
    raw = Client(client.application, use_cookies=False)

    # WSGI passes header bytes through as latin-1; b"\xff" is not UTF-8.
    response = raw.get("/read", headers={"Cookie": f"tracker=\xff\xfe; session={signed}"})

    assert response.status_code == 200
    assert response.get_data(as_text=True) == "{'user': 'alice'}"


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"path": "/app", "domain": "example.com", "secure": True, "samesite": "Strict"},
        {"secure": True, "samesite": "None", "partitioned": True, "httponly": False},
        {"name": "__Host-s", "secure": True, "samesite": None},
    ],
)
@pytest.mark.parametrize("scheme", ["http", "https"])
def test_set_cookie_is_werkzeugs_for_every_policy(options: dict[str, Any], scheme: str) -> None:
    # dump() reuses the attributes werkzeug spelled once (those with a Max-Age for the
    # second their Expires is in); the header must not change by it.
    from werkzeug.http import dump_cookie

    from wsgi_session.cookies import CookiePolicy

    policy = CookiePolicy(**options)
    for script_name in ("", "/mounted", ""):
        environ = {"SCRIPT_NAME": script_name, "wsgi.url_scheme": scheme}
        for value, max_age in (
            ("abc.DEF-_9", None),
            ("", None),
            ('needs "quotes"', None),
            ("v", 60),
            ("v", 60),
            ('needs "quotes"', 60),
            ("zoë;a b", None),
            ("\\056", 60),
            ("", 0),
        ):
            for _ in range(3):  # Expires is the second of the call: both in the same one
                second = int(time.time())
                dumped = policy.dump(environ, value, max_age)
                expected = dump_cookie(
                    policy.name,
                    value,
                    max_age=max_age,
                    path=policy.path or script_name or "/",
                    domain=policy.domain,
                    secure=policy.secure if policy.secure is not None else scheme == "https",
                    httponly=policy.httponly,
                    samesite=policy.samesite,
                    partitioned=policy.partitioned,
                    max_size=0,
                )
                if int(time.time()) == second:
                    break
            assert dumped == expected

"""Settings from strings: env vars and ini keys become a working middleware, or one clear error."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as examples
from hypothesis import strategies as st
from memcached_server import MemcachedServer
from werkzeug.test import Client

from wsgi_session import ConfigurationError, MemoryStore, SessionMiddleware
from wsgi_session.config import (
    REDIS_SCHEMES,
    Config,
    format_duration,
    from_env,
    from_settings,
    load_env,
    load_settings,
    parse_duration,
    store_from_url,
    wrap,
)
from wsgi_session.stores.memcached import MemcachedStore
from wsgi_session.stores.sqlite import SQLiteStore

SECRET = "config-test-secret-0123456789abcdef0123456789"
OLD_SECRET = "config-test-old-secret-0123456789abcdef012345"


def counter(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
    session = environ["wsgi_session"]
    if environ["PATH_INFO"] == "/remember":
        session.permanent = True
    session["n"] = session.get("n", 0) + 1
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [str(session["n"]).encode()]


def env(**settings: str) -> dict[str, str]:
    """Environment variables: the secret plus ``settings`` (names without prefix)."""
    return {"WSGI_SESSION_SECRET_KEY": SECRET} | {
        f"WSGI_SESSION_{name}": value for name, value in settings.items()
    }


def error(settings: dict[str, str], prefix: str = "WSGI_SESSION_") -> str:
    with pytest.raises(ConfigurationError) as raised:
        from_settings(counter, settings, prefix)
    message = str(raised.value)
    assert SECRET not in message and OLD_SECRET not in message
    return message


@pytest.fixture(autouse=True)
def _state_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The default SQLite file lives under tmp_path, not in the user's home."""
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))


# -- durations ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("900", 900), ("45s", 45), ("30m", 1800), ("2h", 7200), ("14d", 1209600), ("1h30m", 5400)],
)
def test_durations(text: str, seconds: int) -> None:
    assert parse_duration(text) == seconds
    assert parse_duration(format_duration(seconds)) == seconds


@pytest.mark.parametrize("text", ["2x", "-5", "1.5h", "h", "14 days", "1h30"])
def test_bad_durations_name_the_setting_the_value_and_the_form(text: str) -> None:
    message = error(env(IDLE_TIMEOUT=text))
    assert f"WSGI_SESSION_IDLE_TIMEOUT={text!r}" in message
    assert "14d, 2h, 30m, 45s" in message


def test_timeouts_reach_the_cookie_and_the_store(tmp_path: Path) -> None:
    middleware = from_env(
        counter,
        env(
            STORE="memory://",
            IDLE_TIMEOUT="2h",
            ABSOLUTE_TIMEOUT="1d",
            REFRESH_INTERVAL="0",
        ),
    )
    response = Client(middleware).get("/remember")
    assert "Max-Age=7200" in response.headers["Set-Cookie"]
    assert middleware.lifetime.absolute_timeout == 86400
    assert middleware.lifetime.refresh_interval == 0


def test_zero_idle_timeout_is_refused() -> None:
    message = error(env(IDLE_TIMEOUT="0"))
    assert "WSGI_SESSION_IDLE_TIMEOUT='0': must be above zero" in message


# -- cookie settings --------------------------------------------------------------


def test_cookie_settings_shape_the_set_cookie_header() -> None:
    middleware = from_env(
        counter,
        env(
            STORE="memory://",
            COOKIE_NAME="__Host-sid",
            COOKIE_SECURE="yes",
            COOKIE_HTTPONLY="false",
            COOKIE_SAMESITE="strict",
            COOKIE_PARTITIONED="on",
        ),
    )
    cookie = Client(middleware).get("/", base_url="https://example.test").headers["Set-Cookie"]
    assert cookie.startswith("__Host-sid=")
    attributes = {part.strip().split("=")[0] for part in cookie.split(";")[1:]}
    assert attributes == {"Secure", "Path", "SameSite", "Partitioned"}
    assert "SameSite=Strict" in cookie


def test_domain_path_and_samesite_off() -> None:
    middleware = from_env(
        counter,
        env(
            STORE="memory://",
            COOKIE_DOMAIN="example.test",
            COOKIE_PATH="/app",
            COOKIE_SAMESITE="off",
        ),
    )
    cookie = Client(middleware).get("/app/").headers["Set-Cookie"]
    assert "Domain=example.test" in cookie and "Path=/app" in cookie
    assert "SameSite" not in cookie and "Secure" not in cookie


def test_secure_auto_follows_the_request_scheme() -> None:
    middleware = from_env(counter, env(STORE="memory://", COOKIE_SECURE="auto"))
    https = Client(middleware).get("/", base_url="https://example.test")
    assert "Secure" in https.headers["Set-Cookie"]
    http = Client(middleware).get("/", base_url="http://example.test")
    assert "Secure" not in http.headers["Set-Cookie"]


@pytest.mark.parametrize(
    ("name", "value", "allowed"),
    [
        ("COOKIE_SECURE", "sometimes", "true or false"),
        ("COOKIE_HTTPONLY", "2", "true or false"),
        ("COOKIE_SAMESITE", "loose", "Lax, Strict, None, off"),
        ("ON_STORE_ERROR", "ignore", "fail, degrade"),
        ("ABSOLUTE_TIMEOUT", "never", "or off"),
    ],
)
def test_bad_values_name_setting_value_and_what_is_allowed(
    name: str, value: str, allowed: str
) -> None:
    message = error(env(**{name: value}))
    assert f"WSGI_SESSION_{name}={value!r}" in message
    assert allowed in message


def test_settings_that_do_not_work_together_are_named() -> None:
    message = error(env(STORE="memory://", COOKIE_SAMESITE="None"))
    assert "WSGI_SESSION_COOKIE_SAMESITE='None'" in message
    assert "WSGI_SESSION_COOKIE_SECURE is not set" in message
    assert re.search(r"requires (cookie_)?secure=True", message)


def test_host_prefix_with_a_domain_is_refused_naming_both() -> None:
    message = error(env(COOKIE_NAME="__Host-s", COOKIE_SECURE="true", COOKIE_DOMAIN="example.test"))
    assert "WSGI_SESSION_COOKIE_NAME='__Host-s'" in message
    assert "WSGI_SESSION_COOKIE_DOMAIN='example.test'" in message


# -- secrets ------------------------------------------------------------------------


def test_a_missing_secret_is_an_error_naming_the_variable() -> None:
    message = error({"WSGI_SESSION_STORE": "memory://"})
    assert "WSGI_SESSION_SECRET_KEY is not set" in message
    assert "secrets.token_hex(32)" in message


def test_fallback_keys_still_verify_old_cookies(tmp_path: Path) -> None:
    store = f"sqlite://{tmp_path}/sessions.db"
    before = Client(
        from_env(counter, {"WSGI_SESSION_SECRET_KEY": OLD_SECRET, "WSGI_SESSION_STORE": store})
    )
    before.get("/")
    old_cookie = {"Cookie": cookie_header(before)}
    rotated = from_env(counter, env(STORE=store, FALLBACK_KEYS=f" {OLD_SECRET} , another-old-key"))
    assert Client(rotated, use_cookies=False).get("/", headers=old_cookie).text == "2"
    forgotten = from_env(counter, env(STORE=store))
    assert Client(forgotten, use_cookies=False).get("/", headers=old_cookie).text == "1"


def cookie_header(client: Client) -> str:
    cookie = client.get_cookie("session")
    assert cookie is not None
    return f"session={cookie.value}"


def test_secrets_are_never_echoed() -> None:
    settings = env(FALLBACK_KEYS=OLD_SECRET, COOKIE_SAMESITE="None", IDLE_TIMEOUT="soon")
    message = error(settings)
    assert "WSGI_SESSION_IDLE_TIMEOUT='soon'" in message
    config = load_env(env(FALLBACK_KEYS=f"{OLD_SECRET},x", STORE="memory://"))
    shown = config.effective()
    assert SECRET not in str(shown) and OLD_SECRET not in str(shown)
    assert shown["WSGI_SESSION_SECRET_KEY"] == f"(hidden) {len(SECRET)} characters"
    assert shown["WSGI_SESSION_FALLBACK_KEYS"] == "(hidden) 2 keys"


def test_a_secret_under_a_mistyped_name_is_not_echoed() -> None:
    message = error(env(SECRET_KY=OLD_SECRET))
    assert "WSGI_SESSION_SECRET_KY: unknown setting" in message
    assert "did you mean WSGI_SESSION_SECRET_KEY?" in message


# -- unknown names, several problems, empty values, prefixes ------------------------


def test_unknown_settings_with_the_prefix_are_refused() -> None:
    message = error(env(COOKIE_SECUR="true", STORE="memory://"))
    assert "WSGI_SESSION_COOKIE_SECUR: unknown setting" in message
    assert "did you mean WSGI_SESSION_COOKIE_SECURE?" in message


def test_variables_without_the_prefix_are_ignored() -> None:
    middleware = from_env(counter, env(STORE="memory://") | {"PATH": "/bin", "SESSION_X": "1"})
    assert isinstance(middleware, SessionMiddleware)


def test_every_problem_is_reported_at_once() -> None:
    message = error(
        {"WSGI_SESSION_COOKIE_SECURE": "maybe", "WSGI_SESSION_IDLE_TIMEOUT": "soon", "X": "1"}
    )
    assert message.startswith("invalid session settings:")
    assert "WSGI_SESSION_COOKIE_SECURE='maybe'" in message
    assert "WSGI_SESSION_IDLE_TIMEOUT='soon'" in message
    assert "WSGI_SESSION_SECRET_KEY is not set" in message


def test_an_empty_value_means_the_default() -> None:
    middleware = from_env(counter, env(STORE="memory://", COOKIE_NAME="", IDLE_TIMEOUT=" "))
    assert Client(middleware).get("/").headers["Set-Cookie"].startswith("session=")
    assert middleware.lifetime.idle_timeout == 14 * 86400


def test_ini_style_keys_without_prefix_in_any_case() -> None:
    middleware = from_settings(
        counter, {"secret_key": SECRET, "Store": "memory://", "cookie_name": "sid"}
    )
    assert Client(middleware).get("/").headers["Set-Cookie"].startswith("sid=")
    message = error({"secret_key": SECRET, "cookie_nam": "sid"}, prefix="")
    assert "cookie_nam: unknown setting (did you mean COOKIE_NAME?)" in message


def test_a_custom_prefix() -> None:
    settings = {"MYAPP_SECRET_KEY": SECRET, "MYAPP_STORE": "memory://", "MYAPP_COOKIE_NAME": "m"}
    middleware = from_env(counter, settings, prefix="MYAPP_")
    assert Client(middleware).get("/").headers["Set-Cookie"].startswith("m=")


def test_the_first_source_wins_and_errors_name_where_a_setting_came_from() -> None:
    config = Config.load(
        ({"cookie_name": "ini"}, ""),
        ({"WSGI_SESSION_COOKIE_NAME": "env", "WSGI_SESSION_SECRET_KEY": SECRET}, "WSGI_SESSION_"),
    )
    assert config.middleware(counter).policy.name == "ini"
    with pytest.raises(ConfigurationError) as raised:
        Config.load(({"store": "memory://"}, ""), ({}, "WSGI_SESSION_"))
    assert "SECRET_KEY or WSGI_SESSION_SECRET_KEY is not set" in str(raised.value)


# -- store URLs ---------------------------------------------------------------------


def test_sqlite_url_with_an_absolute_path(tmp_path: Path) -> None:
    database = tmp_path / "sessions.db"
    middleware = from_env(counter, env(STORE=f"sqlite://{database}?timeout=2&table=web"))
    client = Client(middleware)
    assert client.get("/").text == "1"
    assert client.get("/").text == "2"
    assert database.exists()
    store = load_env(env(STORE=f"sqlite://{database}")).store
    assert isinstance(store, SQLiteStore) and store.path == database


def test_sqlite_four_slashes_mean_the_same_absolute_path(tmp_path: Path) -> None:
    store = store_from_url(f"sqlite:///{tmp_path}/x.db")
    assert isinstance(store, SQLiteStore) and store.path == tmp_path / "x.db"


def test_the_default_store_is_the_sqlite_file_in_the_state_directory(tmp_path: Path) -> None:
    for settings in (env(), env(STORE="sqlite://")):
        store = load_env(settings).store
        assert isinstance(store, SQLiteStore)
        assert store.path == tmp_path / "state" / "wsgi_session" / "sessions.sqlite3"


def test_memory_url() -> None:
    assert isinstance(store_from_url("memory://"), MemoryStore)


def test_memcached_url_with_a_cluster_and_options() -> None:
    store = store_from_url(
        "memcached://10.0.0.1:11211,10.0.0.2:11212?key_prefix=app:&timeout=0.25"
        "&connect_timeout=0.1&dead_timeout=5&max_pool_size=4"
    )
    assert isinstance(store, MemcachedStore)
    assert repr(store) == "MemcachedStore(['10.0.0.1:11211', '10.0.0.2:11212'], key_prefix='app:')"


def test_memcached_url_against_a_real_server(memcached_server: MemcachedServer) -> None:
    url = f"memcached://{memcached_server.address}?key_prefix=one:"
    client = Client(from_env(counter, env(STORE=url)))
    assert client.get("/").text == "1"
    assert client.get("/").text == "2"
    # Another prefix is another namespace: the same cookie finds nothing there.
    other = from_env(counter, env(STORE=f"memcached://{memcached_server.address}?key_prefix=two:"))
    response = Client(other, use_cookies=False).get("/", headers={"Cookie": cookie_header(client)})
    assert response.text == "1"


def test_cookie_url() -> None:
    from wsgi_session.backends.cookie import CookieStore

    store = store_from_url("cookie://?encrypt=true&max_size=3000")
    assert isinstance(store, CookieStore)
    assert store.encrypt and store.max_size == 3000
    client = Client(from_env(counter, env(STORE="cookie://")))
    assert client.get("/").text == "1"
    assert client.get("/").text == "2"


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("mongodb://localhost", "unknown store 'mongodb'"),
        ("sqlite://host/sessions.db", "three slashes"),
        ("sqlite:///var/lib/", "must name a file"),
        ("sqlite:relative.db", "must be absolute"),
        ("sqlite:///x.db?timeout=soon", "option timeout='soon' must be a number"),
        ("sqlite:///x.db?table=1; drop", "not a plain SQL identifier"),
        ("memcached://", "write memcached://host:port"),
        ("memcached://h:11211?prefix=x", "unknown option 'prefix'"),
        ("memcached://h:11211?timeout=1&timeout=2", "given twice"),
        ("memcached://h:99999", "not a host:port address"),
        ("memcached://h?max_pool_size=0", "at least 1"),
        ("memory:///some/path", "takes no host or path"),
        ("cookie://?encrypt=perhaps", "option encrypt='perhaps' must be true or false"),
    ],
)
def test_bad_store_urls(url: str, reason: str) -> None:
    message = error(env(STORE=url))
    assert f"WSGI_SESSION_STORE={url!r}" in message
    assert reason in message
    assert "sqlite:///absolute/path.db" in message  # what is allowed


def test_a_password_in_a_store_url_is_refused_and_masked() -> None:
    message = error(env(STORE="memcached://user:hunter2@h:11211"))
    assert "hunter2" not in message
    assert "passwords are not supported" in message


def test_store_from_url_errors_name_the_url() -> None:
    with pytest.raises(ConfigurationError, match="store URL 'nope://'"):
        store_from_url("nope://")


# -- effective configuration and wrap -----------------------------------------------


def test_effective_configuration_resolves_defaults(tmp_path: Path) -> None:
    shown = load_env(env(IDLE_TIMEOUT="2h")).effective()
    assert shown["WSGI_SESSION_IDLE_TIMEOUT"] == "2h"
    assert shown["WSGI_SESSION_REFRESH_INTERVAL"] == "12m"  # a tenth of the idle timeout
    assert shown["WSGI_SESSION_COOKIE_SECURE"].startswith("auto")
    assert shown["WSGI_SESSION_ABSOLUTE_TIMEOUT"] == "off"
    default_file = tmp_path / "state" / "wsgi_session" / "sessions.sqlite3"
    assert shown["WSGI_SESSION_STORE"] == f"sqlite:// = SQLiteStore('{default_file}')"


def test_wrap_imports_the_application_and_configures_it_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "wsgi_session_example_app.py").write_text(
        "from test_config import counter\nclass holder:\n    app = counter\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    for name, value in env(STORE="memory://", COOKIE_NAME="wrapped").items():
        monkeypatch.setenv(name, value)
    for target in ("wsgi_session_example_app:holder.app", "test_config:counter"):
        response = Client(wrap(target)).get("/")
        assert response.text == "1"
        assert response.headers["Set-Cookie"].startswith("wrapped=")


@pytest.mark.parametrize(
    ("target", "reason"),
    [
        ("test_config:nothing_here", "test_config has no nothing_here"),
        ("test_config", "test_config has no application"),
        ("test_config:SECRET", "is a str, not a WSGI application"),
        (":app", "does not name a module"),
    ],
)
def test_wrap_explains_a_bad_target(
    target: str, reason: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WSGI_SESSION_SECRET_KEY", SECRET)
    with pytest.raises(ImportError, match=reason):
        wrap(target)


# -- a password in a store URL is never shown, whatever it holds -----------------------

URL_SPECIALS = list("[]@:/?#% ")
MARKED = "QZXJ"  # letters no message uses side by side: any two of them in a row are the password's
URL_FORMS = [
    "redis://{credentials}@127.0.0.1:{port}/0?connect_timeout=0.2&timeout=0.2",
    "redis://{credentials}@127.0.0.1:{port}/db?connect_timeout=0.2",  # a bad database number
    "rediss://{credentials}@127.0.0.1:{port}/1?connect_timeout=0.2&timeout=0.2",
    "rediss://{credentials}@127.0.0.1:{port}?nope=1",  # an unknown option
    "unix://{credentials}@/no/such/redis.sock?db=1&connect_timeout=0.2",
    "redis+sentinel://{credentials}@127.0.0.1:{port}/mymaster/0?connect_timeout=0.2&timeout=0.2",
    "redis+sentinel://{credentials}@127.0.0.1:{port}",  # no service name
    "redis+cluster://{credentials}@127.0.0.1:{port}?connect_timeout=0.2&timeout=0.2",
    "redis+cluster://{credentials}@127.0.0.1:{port}/3",  # a Cluster has only database 0
    "memcached://{credentials}@127.0.0.1:{port}",
    "sqlite://{credentials}@/sessions.db",
    "memory://{credentials}@",
    "cookie://{credentials}@?encrypt=true",
]
passwords = (
    st.lists(st.sampled_from(URL_SPECIALS + list(MARKED)), min_size=1, max_size=14)
    .map("".join)
    .filter(lambda password: sum(c in MARKED for c in password) >= 2)
)


def pieces(password: str) -> list[str]:
    """Every two marked letters in a row in ``password``: none may be shown."""
    return [
        password[i : i + 2]
        for i in range(len(password) - 1)
        if set(password[i : i + 2]) <= set(MARKED)
    ]


def shows_none_of(password: str, *texts: str) -> None:
    for text in texts:
        for piece in pieces(password):
            assert piece not in text, (password, text)


@given(form=st.sampled_from(URL_FORMS), user=st.sampled_from(["", "app"]), password=passwords)
@examples(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
def test_no_piece_of_a_store_url_password_is_ever_shown(
    form: str,
    user: str,
    password: str,
    shared_redis: Any,
    run: Callable[..., tuple[int, str, str]],
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    from django.core.exceptions import ImproperlyConfigured
    from django.test import override_settings
    from django_setup import django_project_files

    from wsgi_session.django import _store_from_settings
    from wsgi_session.stores.redis import RedisStore

    url = form.format(credentials=f"{user}:{password}", port=shared_redis.port)
    shown = []
    try:
        store = store_from_url(url)
    except ConfigurationError as exc:
        shown.append(str(exc))
    else:  # taken as written, percent-decoded, and never shown
        assert isinstance(store, RedisStore) and not any(c in password for c in "/?#")
        assert store._target is not None and store._target.password == unquote(password)
        shown.append(repr(store))
        store.close()
    if url.partition(":")[0] in REDIS_SCHEMES:  # the Redis store reading the URL itself
        try:
            RedisStore.from_url(url).close()
        except ConfigurationError as exc:
            shown.append(str(exc))
    for given_settings in (env(STORE=url), {"secret_key": SECRET, "store": url}):
        try:
            load_settings(given_settings, "" if "secret_key" in given_settings else "WSGI_SESSION_")
        except ConfigurationError as exc:
            shown.append(str(exc))
    flask_config = {
        "SECRET_KEY": "flask",
        "WSGI_SESSION_SECRET_KEY": SECRET,
        "WSGI_SESSION_STORE": url,
    }
    try:
        from_settings(counter, flask_config, "WSGI_SESSION_")
    except ConfigurationError as exc:
        shown.append(str(exc))
    django_project_files(tmp_path_factory)
    with override_settings(WSGI_SESSION_STORE=url):
        try:
            _store_from_settings()
        except ImproperlyConfigured as exc:
            shown.append(str(exc))
    status, out, err = run("check", SECRET_KEY=SECRET, STORE=url)
    assert status in (0, 1)
    shown.append(out + err)
    shows_none_of(password, *shown)


def test_the_reviewed_password_is_not_quoted() -> None:
    url = "redis://:pa[ssw0rd-SECRET]xyz@127.0.0.1:6390/0"
    store = store_from_url(url)
    assert "ssw0rd" not in repr(store)
    with pytest.raises(ConfigurationError) as raised:
        store_from_url("memcached://:pa[ssw0rd-SECRET]xyz@127.0.0.1:11211")
    assert "ssw0rd" not in str(raised.value) and "passwords are not supported" in str(raised.value)

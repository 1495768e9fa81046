"""Build a middleware from flat string settings: environment variables, ini files.

Every setting is a string, named without prefix as in the table below; a
source gives them with its own prefix (``WSGI_SESSION_SECRET_KEY`` in the
environment, ``secret_key`` in a PasteDeploy section). Every problem found is
reported at once in one :class:`~wsgi_session.errors.ConfigurationError` that
names the setting, the value (never a secret's) and what is allowed.
"""

from __future__ import annotations

import difflib
import importlib
import os
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import SplitResult, parse_qsl, unquote, urlsplit

from wsgi_session.backends import BackendFactory
from wsgi_session.errors import ConfigurationError
from wsgi_session.middleware import SessionMiddleware
from wsgi_session.stores.base import Store

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIApplication
else:
    WSGIApplication = Any

ENV_PREFIX = "WSGI_SESSION_"
DEFAULT_STORE = "sqlite://"
AnyStore = Store | BackendFactory

_TRUE = ("true", "yes", "on", "1")
_FALSE = ("false", "no", "off", "0")
_UNITS = {"d": 86400, "h": 3600, "m": 60, "s": 1}
_DURATION = re.compile(r"(?:\d+[dhms])+")
_HIDDEN = "(hidden)"


# -- value kinds: how one setting is parsed and shown -------------------------


class _Kind:
    """Parses a setting's text (``ValueError`` says why not) and shows a value."""

    allowed = ""

    def parse(self, text: str) -> object:
        raise NotImplementedError

    def show(self, value: object) -> str:
        return str(value)


class _Text(_Kind):
    allowed = "any text"

    def __init__(self, unset: str = "") -> None:
        self.unset = unset

    def parse(self, text: str) -> object:
        return text

    def show(self, value: object) -> str:
        return self.unset if value is None else str(value)


class _Secret(_Kind):
    allowed = (
        "a long random string, such as the output of "
        "python -c 'import secrets; print(secrets.token_hex(32))'"
    )

    def parse(self, text: str) -> object:
        return text

    def show(self, value: object) -> str:
        return f"{_HIDDEN} {len(str(value))} characters" if value else "(not set)"


class _SecretList(_Kind):
    allowed = "a comma-separated list of former secret keys"

    def parse(self, text: str) -> object:
        return [key.strip() for key in text.split(",") if key.strip()]

    def show(self, value: object) -> str:
        count = len(value) if isinstance(value, list) else 0
        return f"{_HIDDEN} {count} key{'s' if count != 1 else ''}" if count else "(none)"


class _Flag(_Kind):
    """true/false; with ``unset_word`` that word (e.g. ``auto``) means ``None``."""

    def __init__(self, unset_word: str | None = None, unset_text: str = "") -> None:
        self.unset_word = unset_word
        self.unset_text = unset_text
        self.allowed = "true or false (also yes/no, on/off, 1/0)" + (
            f", or {unset_word}" if unset_word else ""
        )

    def parse(self, text: str) -> object:
        word = text.lower()
        if word in _TRUE:
            return True
        if word in _FALSE:
            return False
        if self.unset_word is not None and word == self.unset_word:
            return None
        raise ValueError("not a boolean")

    def show(self, value: object) -> str:
        if value is None:
            return self.unset_text
        return "true" if value else "false"


class _Choice(_Kind):
    """One of a few words (case-insensitive), each standing for a value."""

    def __init__(self, choices: Mapping[str, object]) -> None:
        self.choices = dict(choices)
        self.allowed = ", ".join(self.choices)

    def parse(self, text: str) -> object:
        for word, value in self.choices.items():
            if text.lower() == word.lower():
                return value
        raise ValueError("not one of the choices")

    def show(self, value: object) -> str:
        return next(word for word, known in self.choices.items() if known == value)


class _Duration(_Kind):
    """Whole seconds: ``900``, ``45s``, ``30m``, ``2h``, ``14d`` or ``1h30m``."""

    def __init__(self, positive: bool, optional: bool = False) -> None:
        self.positive = positive
        self.optional = optional
        self.allowed = (
            f"a duration{' above zero' if positive else ''}, in seconds (900) or with units "
            "d, h, m, s (14d, 2h, 30m, 45s, 1h30m)"
        ) + (", or off" if optional else "")

    def parse(self, text: str) -> object:
        word = text.lower().replace(" ", "")
        if self.optional and word in ("off", "none"):
            return None
        seconds = parse_duration(word)
        if self.positive and not seconds:
            raise ValueError("must be above zero")
        return seconds

    def show(self, value: object) -> str:
        if value is None:
            return "off"
        assert isinstance(value, int)
        return format_duration(value)


def parse_duration(text: str) -> int:
    """Seconds in ``text`` (``900``, ``14d``, ``2h``, ``1h30m``); ``ValueError`` if none."""
    if text.isdigit():
        return int(text)
    if not _DURATION.fullmatch(text):
        raise ValueError("not a duration")
    return sum(int(number) * _UNITS[unit] for number, unit in re.findall(r"(\d+)(\D)", text))


def format_duration(seconds: int) -> str:
    """``1209600`` → ``14d``, ``5400`` → ``1h30m``, ``0`` → ``0s``."""
    parts = []
    for unit, size in _UNITS.items():
        count, seconds = divmod(seconds, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts) or "0s"


# -- store URLs ---------------------------------------------------------------


class _StoreURL(_Kind):
    allowed = (
        "sqlite:// (the default file), sqlite:///absolute/path.db, "
        "memcached://host:port[,host:port...][?key_prefix=&timeout=&connect_timeout=&"
        "dead_timeout=&max_pool_size=], memory://, cookie://[?encrypt=&compress=&max_size=], "
        "redis://[[user]:password@]host[:port][/db], rediss:// (TLS), unix:///path.sock, "
        "redis+sentinel://[[user]:password@]host:port[,...]/service[/db], "
        "redis+cluster://[[user]:password@]host:port[,...] (Redis options: docs/redis.md)"
    )

    def parse(self, text: str) -> AnyStore:
        try:
            url = urlsplit(text)
        except ValueError as exc:
            raise ValueError(f"not a URL ({exc})") from None
        if url.scheme.lower() in REDIS_SCHEMES:  # the Redis store reads its own URLs
            try:
                from wsgi_session.stores.redis import RedisStore
            except ImportError:
                raise ValueError("needs redis-py: pip install 'wsgi-session[redis]'") from None
            try:
                return RedisStore.from_url(text)
            except ConfigurationError as exc:
                raise ValueError(str(exc)) from None
        builder = _STORES.get(url.scheme.lower())
        if builder is None:
            raise ValueError(f"unknown store {url.scheme!r}")
        if url.username is not None or url.password is not None:
            raise ValueError("user names and passwords are not supported in store URLs")
        options = _query(url, builder.options)
        try:
            return builder.build(url, options)
        except ConfigurationError as exc:
            raise ValueError(str(exc)) from None


@dataclass(frozen=True)
class _StoreBuilder:
    build: Callable[[SplitResult, dict[str, Any]], AnyStore]
    options: Mapping[str, _Kind]


class _Number(_Kind):
    def __init__(self, convert: Callable[[str], float | int]) -> None:
        self.convert = convert
        self.allowed = "a whole number" if convert is int else "a number"

    def parse(self, text: str) -> object:
        return self.convert(text)


def _query(url: SplitResult, kinds: Mapping[str, _Kind]) -> dict[str, Any]:
    """The URL's query options, parsed by ``kinds``; ``ValueError`` names a bad one."""
    if url.fragment:
        raise ValueError("a store URL has no #fragment")
    options: dict[str, Any] = {}
    for name, text in parse_qsl(url.query, keep_blank_values=True):
        kind = kinds.get(name)
        if kind is None:
            known = ", ".join(kinds) or "none"
            raise ValueError(f"unknown option {name!r} for {url.scheme}:// (known: {known})")
        if name in options:
            raise ValueError(f"option {name!r} is given twice")
        try:
            options[name] = kind.parse(text)
        except ValueError:
            raise ValueError(f"option {name}={text!r} must be {kind.allowed}") from None
    return options


def _no_location(url: SplitResult, form: str) -> None:
    if url.netloc or url.path:
        raise ValueError(f"{url.scheme}:// takes no host or path; write {form}")


def _sqlite(url: SplitResult, options: dict[str, Any]) -> AnyStore:
    from wsgi_session.stores.sqlite import SQLiteStore

    if url.netloc:
        raise ValueError(
            "a sqlite URL has no host: write sqlite:///absolute/path.db (three slashes) "
            "or sqlite:// for the default file"
        )
    path = unquote(url.path)
    if path and not path.startswith("/"):
        raise ValueError("the sqlite path must be absolute: sqlite:///absolute/path.db")
    if path.endswith("/"):
        raise ValueError("the sqlite path must name a file")
    # Four slashes, as SQLAlchemy spells absolute paths, mean the same file as three.
    return SQLiteStore("/" + path.lstrip("/") if path else None, **options)


def _memcached(url: SplitResult, options: dict[str, Any]) -> AnyStore:
    from wsgi_session.stores.memcached import MemcachedStore

    if not url.netloc or url.path:
        raise ValueError("write memcached://host:port or memcached://host1:port,host2:port")
    return MemcachedStore(unquote(url.netloc), **options)


def _memory(url: SplitResult, options: dict[str, Any]) -> AnyStore:
    from wsgi_session.stores.memory import MemoryStore

    _no_location(url, "memory://")
    return MemoryStore()


def _cookie(url: SplitResult, options: dict[str, Any]) -> AnyStore:
    from wsgi_session.stores.cookie import CookieStore

    _no_location(url, "cookie://?encrypt=true")
    return CookieStore(**options)


REDIS_SCHEMES = ("redis", "rediss", "unix", "redis+sentinel", "redis+cluster")  # stores/redis.py
_SECONDS = _Number(float)
_store_url = _StoreURL()
_STORES = {
    "sqlite": _StoreBuilder(_sqlite, {"table": _Text(), "timeout": _SECONDS}),
    "memcached": _StoreBuilder(
        _memcached,
        {
            "key_prefix": _Text(),
            "connect_timeout": _SECONDS,
            "timeout": _SECONDS,
            "dead_timeout": _SECONDS,
            "max_pool_size": _Number(int),
        },
    ),
    "memory": _StoreBuilder(_memory, {}),
    "cookie": _StoreBuilder(
        _cookie, {"compress": _Flag(), "encrypt": _Flag(), "max_size": _Number(int)}
    ),
}


# -- the settings -------------------------------------------------------------


@dataclass(frozen=True)
class _Setting:
    name: str  # without prefix, upper case
    argument: str  # the SessionMiddleware keyword it becomes
    kind: _Kind


_SETTINGS = {
    setting.name: setting
    for setting in (
        _Setting("SECRET_KEY", "secret_key", _Secret()),
        _Setting("FALLBACK_KEYS", "fallback_keys", _SecretList()),
        _Setting("STORE", "store", _store_url),
        _Setting("COOKIE_NAME", "cookie_name", _Text()),
        _Setting("COOKIE_DOMAIN", "cookie_domain", _Text(unset="(the request's host only)")),
        _Setting("COOKIE_PATH", "cookie_path", _Text(unset="(the application's SCRIPT_NAME or /)")),
        _Setting(
            "COOKIE_SECURE", "cookie_secure", _Flag("auto", "auto (secure on https requests)")
        ),
        _Setting("COOKIE_HTTPONLY", "cookie_httponly", _Flag()),
        _Setting(
            "COOKIE_SAMESITE",
            "cookie_samesite",
            _Choice({"Lax": "Lax", "Strict": "Strict", "None": "None", "off": None}),
        ),
        _Setting("COOKIE_PARTITIONED", "cookie_partitioned", _Flag()),
        _Setting("IDLE_TIMEOUT", "idle_timeout", _Duration(positive=True)),
        _Setting("ABSOLUTE_TIMEOUT", "absolute_timeout", _Duration(positive=True, optional=True)),
        _Setting("REFRESH_INTERVAL", "refresh_interval", _Duration(positive=False)),
        _Setting("REFRESH_EACH_REQUEST", "refresh_each_request", _Flag()),
        _Setting(
            "ON_STORE_ERROR", "on_store_error", _Choice({"fail": "fail", "degrade": "degrade"})
        ),
    )
}
_SECRETS = ("SECRET_KEY", "FALLBACK_KEYS")
SETTING_NAMES = tuple(_SETTINGS)
STORE_URLS = _StoreURL.allowed

Source = tuple[Mapping[str, str], str]
"""Settings and the prefix their names carry (``""`` for none)."""


class Config:
    """Validated settings, ready to wrap an application.

    Build it with :meth:`load` (or :func:`load_settings` / :func:`load_env`);
    every problem in every source is reported in one ``ConfigurationError``.
    """

    def __init__(
        self,
        arguments: dict[str, Any],
        given: dict[str, tuple[str, str]],
        prefixes: Iterable[str],
    ) -> None:
        self.arguments = arguments
        self.given = given  # NAME -> (the name as written, its text)
        self.prefixes = list(prefixes) or [""]
        self.prefix = self.prefixes[0]  # how effective() names the settings

    @classmethod
    def load(cls, *sources: Source, require_secret: bool = True) -> Config:
        """Parse ``sources``; for a setting given twice the first source wins."""
        problems: list[str] = []
        given: dict[str, tuple[str, str]] = {}
        for settings, prefix in sources:
            for name, shown, text in _entries(settings, prefix, problems):
                given.setdefault(name, (shown, text))
        arguments: dict[str, Any] = {}
        for name, (shown, text) in given.items():
            kind = _SETTINGS[name].kind
            try:
                arguments[_SETTINGS[name].argument] = kind.parse(text)
            except ValueError as exc:
                problems.append(f"{shown}={_display(name, text)}: {exc}; allowed: {kind.allowed}")
        config = cls(arguments, given, (prefix for _, prefix in sources))
        if require_secret and "SECRET_KEY" not in given:
            secret = _SETTINGS["SECRET_KEY"].kind
            problems.append(f"{config._unset('SECRET_KEY')}; allowed: {secret.allowed}")
        if problems:
            raise ConfigurationError(_report(problems))
        if "store" not in arguments:
            arguments["store"] = _store_url.parse(DEFAULT_STORE)
        return config

    @property
    def store(self) -> AnyStore:
        store: AnyStore = self.arguments["store"]
        return store

    @property
    def store_url(self) -> str:
        return self.given["STORE"][1] if "STORE" in self.given else DEFAULT_STORE

    @property
    def shown_store_url(self) -> str:
        """The store URL with its password masked."""
        return _without_password(self.store_url)

    @property
    def store_description(self) -> str:
        """The store URL, and what it resolved to when the store says (the default path)."""
        if type(self.store).__repr__ is object.__repr__:
            return self.shown_store_url
        return f"{self.shown_store_url} = {self.store!r}"

    def middleware(self, app: WSGIApplication) -> SessionMiddleware:
        """``app`` wrapped in a SessionMiddleware with these settings."""
        if "secret_key" not in self.arguments:
            raise ConfigurationError(self._unset("SECRET_KEY"))
        try:
            return SessionMiddleware(app, **self.arguments)
        except ConfigurationError as exc:
            # The checks that span settings live in the core; say which settings they mean.
            raise ConfigurationError(f"{self._related(str(exc))}: {exc}") from None

    def effective(self) -> dict[str, str]:
        """Every setting's effective value as text, secrets masked, names prefixed."""
        middleware = self.middleware(_unused_app)
        shown: dict[str, str] = {}
        for name, setting in _SETTINGS.items():
            if name == "STORE":
                text = self.store_description
            elif name in _SECRETS:
                text = setting.kind.show(self.arguments.get(setting.argument))
            else:
                text = setting.kind.show(_effective_value(middleware, setting.argument))
            shown[self.prefix + name] = text
        return shown

    def _related(self, message: str) -> str:
        """The settings a core error message talks about, with their values."""
        words = set(re.findall(r"[a-z_]+", message))
        related = [
            name
            for name, setting in _SETTINGS.items()
            if {setting.argument, setting.argument.removeprefix("cookie_")} & words
        ]
        parts = []
        for name in related or list(self.given):
            if name in self.given:
                shown, text = self.given[name]
                parts.append(f"{shown}={_display(name, text)}")
            else:
                parts.append(self._unset(name))
        return ", ".join(parts) or "the settings"

    def _unset(self, name: str) -> str:
        return " or ".join(prefix + name for prefix in self.prefixes) + " is not set"


def _entries(
    settings: Mapping[str, str], prefix: str, problems: list[str]
) -> Iterable[tuple[str, str, str]]:
    """``(NAME, name as written, stripped text)`` for the non-empty settings in a source."""
    for key, value in settings.items():
        if not key.upper().startswith(prefix.upper()):
            continue
        name = key[len(prefix) :].upper()
        if name not in _SETTINGS:
            # The value is not shown: it may well be a secret under a mistyped name.
            close = difflib.get_close_matches(name, _SETTINGS, n=1)
            hint = f" (did you mean {prefix}{close[0]}?)" if close else ""
            problems.append(
                f"{key}: unknown setting{hint}; allowed: "
                + ", ".join(prefix + known for known in _SETTINGS)
            )
            continue
        text = str(value).strip()
        if text:  # empty means "not set": the default applies
            yield name, key, text


def _display(name: str, text: str) -> str:
    if name in _SECRETS:
        return _HIDDEN
    if name == "STORE":
        return repr(_without_password(text))
    return repr(text)


def _without_password(url: str) -> str:
    return re.sub(r"(//[^/@:]*:)[^/]*@", r"\1***@", url)


def _report(problems: list[str]) -> str:
    if len(problems) == 1:
        return f"invalid session setting: {problems[0]}"
    return "invalid session settings:\n" + "\n".join(f"  - {problem}" for problem in problems)


def _effective_value(middleware: SessionMiddleware, argument: str) -> object:
    """What the built middleware actually uses for ``argument`` (defaults resolved)."""
    if argument.startswith("cookie_"):
        return getattr(middleware.policy, argument.removeprefix("cookie_"))
    if hasattr(middleware.lifetime, argument):
        return getattr(middleware.lifetime, argument)
    return getattr(middleware, argument)


def _unused_app(environ: Any, start_response: Any) -> Iterable[bytes]:
    raise AssertionError("only built to show the effective configuration")


# -- the public entry points --------------------------------------------------


def store_from_url(url: str) -> AnyStore:
    """The store a URL such as ``sqlite:///var/lib/app/sessions.db`` describes."""
    try:
        return _store_url.parse(url.strip())
    except ValueError as exc:
        raise ConfigurationError(
            f"store URL {_display('STORE', url)}: {exc}; allowed: {STORE_URLS}"
        ) from None


def load_settings(settings: Mapping[str, str], prefix: str = "") -> Config:
    """Validate ``settings`` (names case-insensitive after ``prefix``)."""
    return Config.load((settings, prefix))


def load_env(environ: Mapping[str, str] | None = None, prefix: str = ENV_PREFIX) -> Config:
    """Validate the ``WSGI_SESSION_*`` environment variables (or ``prefix``'s)."""
    return Config.load((os.environ if environ is None else environ, prefix))


def from_settings(
    app: WSGIApplication, settings: Mapping[str, str], prefix: str = ""
) -> SessionMiddleware:
    """``app`` wrapped in a SessionMiddleware configured by ``settings``."""
    return load_settings(settings, prefix).middleware(app)


def from_env(
    app: WSGIApplication,
    environ: Mapping[str, str] | None = None,
    prefix: str = ENV_PREFIX,
) -> SessionMiddleware:
    """``app`` wrapped in a SessionMiddleware configured by environment variables."""
    return load_env(environ, prefix).middleware(app)


def wrap(app: str | WSGIApplication, *, prefix: str = ENV_PREFIX) -> SessionMiddleware:
    """Wrap an application, given as ``"module:attribute"`` or itself, configured by env.

    This is a gunicorn application factory that needs no code change::

        gunicorn 'wsgi_session:wrap("myproject.wsgi:application")'
    """
    return from_env(import_app(app) if isinstance(app, str) else app, prefix=prefix)


def import_app(target: str) -> WSGIApplication:
    """The object ``"package.module:attribute"`` names (``application`` by default)."""
    module_name, _, path = target.partition(":")
    if not module_name:
        raise ImportError(f"{target!r} does not name a module; write 'package.module:attribute'")
    module = importlib.import_module(module_name)
    app: Any = module
    for attribute in (path or "application").split("."):
        try:
            app = getattr(app, attribute)
        except AttributeError:
            raise ImportError(f"{target!r}: {module_name} has no {path or 'application'}") from None
    if not callable(app):
        raise ImportError(f"{target!r} is a {type(app).__name__}, not a WSGI application")
    return cast("WSGIApplication", app)

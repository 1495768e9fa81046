"""The settings: names, kinds, and a validated :class:`Config` that wraps an application.

Every setting is a string, named without prefix as in :data:`_SETTINGS`; a
source gives them with its own prefix (``WSGI_SESSION_SECRET_KEY`` in the
environment, ``secret_key`` in a PasteDeploy section). Every problem found is
reported at once in one :class:`~wsgi_session.errors.ConfigurationError` that
names the setting, the value (never a secret's) and what is allowed.
"""

from __future__ import annotations

import difflib
import importlib
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from operator import attrgetter
from typing import Any, cast

from wsgi_session.backends.adoption import DEFAULT_GRACE
from wsgi_session.config.migration_urls import MigrationURL
from wsgi_session.config.store_urls import (
    DEFAULT_STORE,
    AnyStore,
    StoreURL,
    parse_store_url,
    without_password,
)
from wsgi_session.config.values import (
    HIDDEN,
    Choice,
    Duration,
    Flag,
    Kind,
    Secret,
    SecretList,
    Text,
)
from wsgi_session.errors import ConfigurationError
from wsgi_session.middleware import SessionMiddleware
from wsgi_session.wsgi import WSGIApplication

ENV_PREFIX = "WSGI_SESSION_"


@dataclass(frozen=True)
class _Setting:
    name: str  # without prefix, upper case
    argument: str  # the SessionMiddleware keyword it becomes
    kind: Kind
    # Where a built middleware keeps the value it uses (defaults resolved);
    # None: shown as given (the secrets, masked, and the store's URL).
    effective: Callable[[SessionMiddleware], object] | None


def _setting(name: str, kind: Kind, effective: str | None = None) -> _Setting:
    return _Setting(name, name.lower(), kind, attrgetter(effective) if effective else None)


def _grace(middleware: SessionMiddleware) -> object:
    adoption = getattr(middleware.backend, "adoption", None)
    return DEFAULT_GRACE if adoption is None else adoption.grace


def _keep_old(middleware: SessionMiddleware) -> object:
    adoption = getattr(middleware.backend, "adoption", None)
    return False if adoption is None else adoption.keep_old


_SETTINGS = {
    setting.name: setting
    for setting in (
        _setting("SECRET_KEY", Secret()),
        _setting("FALLBACK_KEYS", SecretList()),
        _setting("STORE", StoreURL()),
        _setting("COOKIE_NAME", Text(), "policy.name"),
        _setting("COOKIE_DOMAIN", Text(unset="(the request's host only)"), "policy.domain"),
        _setting("COOKIE_PATH", Text(unset="(the application's SCRIPT_NAME or /)"), "policy.path"),
        _setting("COOKIE_SECURE", Flag("auto", "auto (secure on https requests)"), "policy.secure"),
        _setting("COOKIE_HTTPONLY", Flag(), "policy.httponly"),
        _setting(
            "COOKIE_SAMESITE",
            Choice({"Lax": "Lax", "Strict": "Strict", "None": "None", "off": None}),
            "policy.samesite",
        ),
        _setting("COOKIE_PARTITIONED", Flag(), "policy.partitioned"),
        _setting("IDLE_TIMEOUT", Duration(positive=True), "lifetime.idle_timeout"),
        _setting(
            "ABSOLUTE_TIMEOUT", Duration(positive=True, optional=True), "lifetime.absolute_timeout"
        ),
        _setting("REFRESH_INTERVAL", Duration(positive=False), "lifetime.refresh_after"),
        _setting("REFRESH_EACH_REQUEST", Flag(), "lifetime.refresh_each_request"),
        _setting(
            "ON_STORE_ERROR", Choice({"fail": "fail", "degrade": "degrade"}), "on_store_error"
        ),
        _setting("SEAL_RECORDS", Flag(), "seal_records"),
        _setting("REQUIRE_SEALED", Flag(), "require_sealed"),
        _setting("OWNER_KEY", Text(unset="(none: sessions have no owner)"), "owner_key"),
        _setting("RECORD_CLIENT", Flag(), "record_client"),
        # Shown as given: the middleware holds the adapter, not its name.
        _setting(
            "METRICS",
            Choice({"off": None, "prometheus": "prometheus", "opentelemetry": "opentelemetry"}),
        ),
        _setting("AUDIT", Flag(unset_text="false")),
        _setting("MIGRATE_FROM", MigrationURL()),
        _Setting("MIGRATE_GRACE", "migrate_grace", Duration(positive=False), _grace),
        _Setting("MIGRATE_KEEP_OLD", "migrate_keep_old", Flag(), _keep_old),
    )
}
_BY_ARGUMENT = {setting.argument: setting for setting in _SETTINGS.values()}
_SECRETS = ("SECRET_KEY", "FALLBACK_KEYS")
SETTING_NAMES = tuple(_SETTINGS)

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
            arguments["store"] = parse_store_url(DEFAULT_STORE)
        return config

    @property
    def store(self) -> AnyStore:
        store: AnyStore = self.arguments["store"]
        return store

    @property
    def store_url(self) -> str:
        return self.given["STORE"][1] if "STORE" in self.given else DEFAULT_STORE

    @property
    def store_scheme(self) -> str:
        """The store URL's scheme, lower case (read without parsing what holds a password)."""
        return self.store_url.partition(":")[0].lower()

    @property
    def shown_store_url(self) -> str:
        """The store URL with its password masked."""
        return without_password(self.store_url)

    @property
    def store_description(self) -> str:
        """The store URL, and what it resolved to when the store says (the default path)."""
        if type(self.store).__repr__ is object.__repr__:
            return self.shown_store_url
        return f"{self.shown_store_url} = {self.store!r}"

    def middleware(self, app: WSGIApplication, **defaults: Any) -> SessionMiddleware:
        """``app`` wrapped in a SessionMiddleware with these settings (else ``defaults``)."""
        if "secret_key" not in self.arguments:
            raise ConfigurationError(self._unset("SECRET_KEY"))
        try:
            return SessionMiddleware(app, **{**defaults, **self.arguments})
        except ConfigurationError as exc:
            # The core checks the settings together too; show the values of those it names.
            raise ConfigurationError(
                "{given}: {problem}", *exc.settings, given=self._given(exc.settings), problem=exc
            ) from None

    def effective(self) -> dict[str, str]:
        """Every setting's effective value as text, secrets masked, names prefixed."""
        middleware = self.middleware(_unused_app)
        shown: dict[str, str] = {}
        for name, setting in _SETTINGS.items():
            if name == "STORE":
                text = self.store_description
            elif setting.effective is None:
                text = setting.kind.show(self.arguments.get(setting.argument))
            else:
                text = setting.kind.show(setting.effective(middleware))
            shown[self.prefix + name] = text
        return shown

    def _given(self, arguments: Iterable[str]) -> str:
        """The settings behind middleware ``arguments``, with their values (all, if none)."""
        related = [_BY_ARGUMENT[name].name for name in arguments if name in _BY_ARGUMENT]
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
        return HIDDEN
    if name == "STORE":
        return repr(without_password(text))
    return repr(text)


def _report(problems: list[str]) -> str:
    if len(problems) == 1:
        return f"invalid session setting: {problems[0]}"
    return "invalid session settings:\n" + "\n".join(f"  - {problem}" for problem in problems)


def _unused_app(environ: Any, start_response: Any) -> Iterable[bytes]:
    raise AssertionError("only built to show the effective configuration")


# -- the public entry points --------------------------------------------------


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

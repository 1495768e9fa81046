"""``migrate_from`` values: which old system's sessions to adopt, and where they are.

``flask``: Flask's signed cookie sessions; ``django.contrib.sessions.backends.<engine>``:
a Django engine, through Django's own ``SessionStore``; ``flask-session+redis://...``
(``+memcached://``, ``+sqlalchemy:...``): Flask-Session 0.7 or later; any store URL of
ours (``sqlite:///path.db``, ``memcached://...``, ``redis://...``): our own old
deployment. Each parses into a :data:`~wsgi_session.migrate.base.SourceFactory`,
checked now, bound to the deployment when the middleware is built.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from wsgi_session.backends import BackendFactory
from wsgi_session.config.store_urls import parse_store_url, without_password
from wsgi_session.config.values import Kind
from wsgi_session.errors import ConfigurationError
from wsgi_session.migrate.base import Host, OldCookie, Source
from wsgi_session.stores.base import read_query

MIGRATION_SOURCES = (
    "flask[?cookie_name=&cookie_path=&cookie_domain=] (where the old cookie is not ours), "
    "django.contrib.sessions.backends.db|cache|cached_db|file|signed_cookies, "
    "flask-session+redis://host:port/db, flask-session+memcached://host:port or "
    "flask-session+sqlalchemy+<SQLAlchemy URL> [?key_prefix=&use_signer=&sid_length=&table=], "
    "or a store URL of ours (sqlite:///path.db, memcached://..., redis://...)"
)
DJANGO_ENGINES = "django.contrib.sessions.backends."


@dataclass(frozen=True)
class SourceURL:
    """A parsed ``migrate_from`` URL: binds its source to a deployment when called."""

    url: str  # as shown: any password masked
    make: Callable[[Host], Source]

    def __call__(self, host: Host) -> Source:
        try:
            return self.make(host)
        except ImportError as exc:  # the old system's library, which reads its sessions
            raise ConfigurationError(
                "{migrate_from} {url} reads the old sessions with {module}, which is not "
                "installed here",
                "migrate_from",
                url=repr(self.url),
                module=exc.name or str(exc),
            ) from None

    def __str__(self) -> str:
        return self.url


class MigrationURL(Kind):
    """The ``MIGRATE_FROM`` setting's kind."""

    allowed = MIGRATION_SOURCES

    def parse(self, text: str) -> SourceURL:
        return parse_source_url(text)

    def show(self, value: object) -> str:
        return "(none: no sessions are adopted)" if value is None else str(value)


def source_from_url(url: str) -> SourceURL:
    """The source ``url`` names; a ``ConfigurationError`` naming ``migrate_from`` if none."""
    try:
        return parse_source_url(url)
    except ValueError as exc:
        raise ConfigurationError(
            "{migrate_from} {url}: {problem}; allowed: {allowed}",
            "migrate_from",
            url=repr(without_password(url.strip())),
            problem=exc,
            allowed=MIGRATION_SOURCES,
        ) from None


def parse_source_url(url: str) -> SourceURL:
    """The source ``url`` names; ``ValueError`` says what is wrong with it."""
    text = url.strip()
    shown = without_password(text)
    scheme, question, query = text.partition("?")
    if scheme == "flask":
        return SourceURL(shown, _flask(_old_cookie(query) if question else None))
    if text.startswith(DJANGO_ENGINES):
        return SourceURL(shown, _django(text))
    if text.startswith("flask-session+"):
        return SourceURL(shown, _flask_session(text))
    try:
        store = parse_store_url(text)
    except ConfigurationError as exc:
        raise ValueError(str(exc)) from None
    if isinstance(store, BackendFactory):
        raise ValueError("its sessions live in the cookie, not in a store to migrate from")

    def bound(host: Host) -> Source:
        from wsgi_session.migrate.stores import StoreSource

        return StoreSource(store, host, shown)

    return SourceURL(shown, bound)


def _old_cookie(query: str) -> OldCookie | None:
    """``cookie_name=&cookie_path=&cookie_domain=``: the old cookie, where it is not ours."""
    options = read_query(query, {"cookie_name": str, "cookie_path": str, "cookie_domain": str})
    name = options.get("cookie_name")
    if not isinstance(name, str) or not name:
        raise ValueError("cookie_name= is needed with the other cookie options")
    path, domain = options.get("cookie_path"), options.get("cookie_domain")
    return OldCookie(name, str(path) if path else None, str(domain) if domain else None)


def _flask(cookie: OldCookie | None) -> Callable[[Host], Source]:
    def bound(host: Host) -> Source:
        from wsgi_session.migrate.flask_cookies import FlaskCookieSource

        return FlaskCookieSource(host, cookie)

    return bound


def _django(engine: str) -> Callable[[Host], Source]:
    def bound(host: Host) -> Source:
        from wsgi_session.migrate.django_engines import DjangoEngineSource

        return DjangoEngineSource(engine, host)

    return bound


def _flask_session(url: str) -> Callable[[Host], Source]:
    def bound(host: Host) -> Source:
        from wsgi_session.migrate.flask_session import FlaskSessionSource

        return FlaskSessionSource.from_url(url, host)

    return bound

"""Build a middleware from flat string settings: environment variables, ini files.

``values``: the kinds of setting values (durations, flags, choices) and how
they are parsed and shown; ``store_urls``: the ``STORE`` setting's URLs;
``settings``: the settings table, :class:`Config` and the entry points.
"""

from __future__ import annotations

from wsgi_session.config.settings import (
    ENV_PREFIX,
    SETTING_NAMES,
    Config,
    Source,
    from_env,
    from_settings,
    import_app,
    load_env,
    load_settings,
    wrap,
)
from wsgi_session.config.store_urls import (
    DEFAULT_STORE,
    REDIS_SCHEMES,
    STORE_URLS,
    AnyStore,
    store_from_url,
)
from wsgi_session.config.values import format_duration, parse_duration

__all__ = [
    "DEFAULT_STORE",
    "ENV_PREFIX",
    "REDIS_SCHEMES",
    "SETTING_NAMES",
    "STORE_URLS",
    "AnyStore",
    "Config",
    "Source",
    "format_duration",
    "from_env",
    "from_settings",
    "import_app",
    "load_env",
    "load_settings",
    "parse_duration",
    "store_from_url",
    "wrap",
]

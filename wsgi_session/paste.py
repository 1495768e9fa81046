"""PasteDeploy filter: ``use = egg:wsgi-session#session`` in an ini file.

The section's keys are the settings in lower case (``secret_key``, ``store``,
``cookie_secure``, ...). A setting the section leaves out is read from its
``WSGI_SESSION_*`` environment variable, so the secret can stay out of the file.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping

from wsgi_session.config import ENV_PREFIX, Config
from wsgi_session.middleware import SessionMiddleware
from wsgi_session.wsgi import WSGIApplication


def filter_factory(
    global_conf: Mapping[str, str], **local_conf: str
) -> Callable[[WSGIApplication], SessionMiddleware]:
    """The ``paste.filter_factory`` entry point; settings are checked right away."""
    return _config(local_conf).middleware


def filter_app_factory(
    app: WSGIApplication, global_conf: Mapping[str, str], **local_conf: str
) -> SessionMiddleware:
    """The ``paste.filter_app_factory`` entry point."""
    return _config(local_conf).middleware(app)


def _config(local_conf: Mapping[str, str]) -> Config:
    return Config.load((local_conf, ""), (os.environ, ENV_PREFIX))
